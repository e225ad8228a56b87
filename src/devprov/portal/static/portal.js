// devprov portal: small progressive enhancements. Every page works without this file.
"use strict";

// Copy buttons: <button class="copy" data-copy="ID" hidden> copies the text of #ID.
document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
  if (!navigator.clipboard) {
    return;
  }
  button.hidden = false;
  button.addEventListener("click", function () {
    var source = document.getElementById(button.dataset.copy);
    if (!source) {
      return;
    }
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 2000);
    });
  });
});

// Certificate pages: while a certificate is unverified its #status carries data-status-url; the
// page asks that URL every 5 s, so a verification done elsewhere (the CLI, the API) shows without
// a reload. Once verified, the proof-of-possession section is hidden and polling stops.
(function watchCertificateStatus() {
  var status = document.querySelector("#status[data-status-url]");
  if (!status || !window.fetch) {
    return;
  }
  function span(className, text) {
    var element = document.createElement("span");
    element.className = className;
    element.textContent = text;
    return element;
  }
  var timer = setInterval(function () {
    fetch(status.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (body) {
        if (!body || body.status !== "Verified") {
          return;
        }
        clearInterval(timer);
        status.replaceChildren(span("badge ok status-word", "Verified"));
        if (body.method) {
          status.append(" ", span("status-method", body.method));
        }
        if (body.verifiedAt) {
          status.append(" ", span("status-when", "since " + body.verifiedAt));
        }
        var possession = document.getElementById("possession");
        if (possession) {
          possession.hidden = true;
        }
      })
      .catch(function () { /* the next tick tries again */ });
  }, 5000);
})();
