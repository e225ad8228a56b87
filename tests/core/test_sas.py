"""core.sas: parsing, building and verifying DPS SAS tokens.

The vectors are tokens captured from Microsoft's SDKs: what each really sent to a capture server,
signed with the test device key and service key below.
docs/sdk-clients.md#sas-tokens-across-the-sdks lists them with the SDK versions, the date and how
they were captured; the capture named beside each token is its entry there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devprov.core.error import (
    InvalidSasSignatureError,
    InvalidSymmetricKeyError,
    MalformedSasTokenError,
    MissingRightError,
    SasTokenExpiredError,
)
from devprov.core.sas import (
    MAX_EXPIRY,
    MAX_SAS_TOKEN_LENGTH,
    Right,
    SasToken,
    build_connection_string,
    build_host_name,
    build_sas_token,
    build_signature,
    derive_device_key,
    parse_sas_token,
    parse_symmetric_key,
    require_right,
    resource_matches_device,
    resource_matches_service,
    verify_sas_token,
    verify_sas_token_against,
)

DEVICE_KEY = "ZGV2aWNla2V5ZGV2aWNla2V5ZGV2aWNla2V5MTIzNDU="  # "devicekey..." (32 bytes)
SERVICE_KEY = "c2VydmljZWtleXNlcnZpY2VrZXlzZXJ2aWNla2V5MTI="  # "servicekey..." (32 bytes)
OTHER_KEY = base64.b64encode(b"\x01" * 32).decode()
SCOPE = "0ne00000001"
DEVICE = "sym-device-1"
HOSTS = {"localhost:8443", "localhost", "127.0.0.1:8443", "127.0.0.1", "127.0.0.1:8081"}

PY_DEVICE = (  # azure-iot-device 2.14.0 over MQTT: sr encoded, no skn
    "SharedAccessSignature sr=0ne00000001%2Fregistrations%2Fsym-device-1"
    "&sig=%2Fk2KSkItX74wzwPTe9TFODkuRTu5KHQz89sspfpyplY%3D&se=1795780846"
)
NODE_DEVICE = (  # Node HTTP transport: sr raw, skn=registration before se
    "SharedAccessSignature sr=0ne00000001/registrations/sym-device-1"
    "&sig=malxbtomBUxJToul3sTRzdUCvxeoIH%2BonkS7LVYub6M%3D&skn=registration&se=1795781053"
)
NODE_MQTT_DEVICE = (  # Node MQTT transport
    "SharedAccessSignature sr=0ne00000001/registrations/sym-device-1"
    "&sig=CUVauhqoWg2ZEX01q7e9esx17vhDo4T5%2FdyKOn%2FwOk0%3D&skn=registration&se=1795781071"
)
PY_SERVICE = (  # azure-iot-deviceprovisioning, HostName=localhost:8443
    "SharedAccessSignature sr=localhost%3A8443"
    "&sig=osubCpKOkz5UwqXSIsPGo%2BtZcx8KfZa%2FoUSZhqZ3%2Fgw%3D&se=1795781021"
    "&skn=provisioningserviceowner"
)
PY_SERVICE_HTTPS = (  # endpoint "https://localhost:8443"
    "SharedAccessSignature sr=https%3A%2F%2Flocalhost%3A8443"
    "&sig=qcNoAftG8VztO67BnoAwsWrbkSKE8Z%2B%2FHkkopmbu6pc%3D&se=1795781027"
    "&skn=provisioningserviceowner"
)
PY_SERVICE_HTTP = (  # endpoint "http://127.0.0.1:8081"
    "SharedAccessSignature sr=http%3A%2F%2F127.0.0.1%3A8081"
    "&sig=XfigOF1XPlVAqxak%2BY5QixcSiD2svpPcQrjmKNLdnj8%3D&se=1795781029"
    "&skn=provisioningserviceowner"
)
OLD_PY_SERVICE = (  # azure-iothub-provisioningserviceclient 1.2.0
    "SharedAccessSignature sr=localhost%3A8443"
    "&sig=6iToWTM8lozMuohT9NHPV0MfIBJj7Md7iwUb%2BbLgkXs%3D&se=1795781036"
    "&skn=provisioningserviceowner"
)
NODE_SERVICE = (  # azure-iot-provisioning-service 1.11.2: sr raw, skn before se
    "SharedAccessSignature sr=localhost"
    "&sig=kEQxgsHv13q1laCfIPgI%2FJznrdMIA0M1lHdS43kVLuA%3D&skn=provisioningserviceowner"
    "&se=1795781089"
)

DEVICE_TOKENS = [
    pytest.param(PY_DEVICE, id="python-device"),
    pytest.param(NODE_DEVICE, id="node-http-device"),
    pytest.param(NODE_MQTT_DEVICE, id="node-mqtt-device"),
]
SERVICE_TOKENS = [
    pytest.param(PY_SERVICE, id="python-service-connection-string"),
    pytest.param(PY_SERVICE_HTTPS, id="python-service-https-endpoint"),
    pytest.param(PY_SERVICE_HTTP, id="python-service-http-endpoint"),
    pytest.param(OLD_PY_SERVICE, id="old-python-service"),
    pytest.param(NODE_SERVICE, id="node-service"),
]


def before(token: SasToken, seconds: float = 60) -> datetime:
    return datetime.fromtimestamp(token.expiry, UTC) - timedelta(seconds=seconds)


def reference_signature(key_b64: str, message: str) -> str:
    """The formula of docs/dps-wire.md#service-sas-tokens written out independently of core.sas."""
    digest = hmac.new(base64.b64decode(key_b64), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


# --- the captured tokens --------------------------------------------------------------------


def test_python_device_token_parses_as_sent() -> None:
    token = parse_sas_token(PY_DEVICE)
    assert token == SasToken(
        resource="0ne00000001%2Fregistrations%2Fsym-device-1",
        signature="/k2KSkItX74wzwPTe9TFODkuRTu5KHQz89sspfpyplY=",
        expiry=1795780846,
        key_name=None,
    )


def test_node_device_token_parses_with_raw_sr_and_skn_before_se() -> None:
    token = parse_sas_token(NODE_DEVICE)
    assert token.resource == "0ne00000001/registrations/sym-device-1"
    assert token.key_name == "registration"
    assert token.expiry == 1795781053


@pytest.mark.parametrize("header", DEVICE_TOKENS)
def test_captured_device_tokens_verify_with_the_device_key(header: str) -> None:
    token = parse_sas_token(header)
    verify_sas_token(token, [DEVICE_KEY], now=before(token))
    assert resource_matches_device(token.resource, SCOPE, DEVICE)
    with pytest.raises(InvalidSasSignatureError):
        verify_sas_token(token, [OTHER_KEY], now=before(token))  # reject twin: wrong key
    assert not resource_matches_device(token.resource, SCOPE, "sym-device-2")


@pytest.mark.parametrize("header", SERVICE_TOKENS)
def test_captured_service_tokens_verify_with_the_policy_key(header: str) -> None:
    token = parse_sas_token(header)
    assert token.key_name == "provisioningserviceowner"
    verify_sas_token(token, [SERVICE_KEY], now=before(token))
    assert resource_matches_service(token.resource, HOSTS)
    with pytest.raises(InvalidSasSignatureError):
        verify_sas_token(token, [DEVICE_KEY], now=before(token))  # reject twin: wrong key
    assert not resource_matches_service(token.resource, {"devprov.example"})


def test_signatures_recompute_from_the_formula() -> None:
    for header, key in [
        (PY_DEVICE, DEVICE_KEY),
        (NODE_DEVICE, DEVICE_KEY),
        (PY_SERVICE, SERVICE_KEY),
    ]:
        token = parse_sas_token(header)
        expected = reference_signature(key, f"{token.resource}\n{token.expiry}")
        assert build_signature(key, token.resource, token.expiry) == expected == token.signature


def test_builder_reproduces_the_python_device_token_byte_for_byte() -> None:
    built = build_sas_token(DEVICE_KEY, f"{SCOPE}/registrations/{DEVICE}", 1795780846)
    assert built == PY_DEVICE


def test_builder_reproduces_the_python_service_token_byte_for_byte() -> None:
    built = build_sas_token(SERVICE_KEY, "localhost:8443", 1795781021, "provisioningserviceowner")
    assert built == PY_SERVICE
    https = build_sas_token(
        SERVICE_KEY, "https://localhost:8443", 1795781027, "provisioningserviceowner"
    )
    assert https == PY_SERVICE_HTTPS


def test_builder_makes_node_tokens_with_raw_sr() -> None:
    built = parse_sas_token(
        build_sas_token(
            DEVICE_KEY,
            f"{SCOPE}/registrations/{DEVICE}",
            1795781053,
            "registration",
            encode_resource=False,
        )
    )
    assert built == parse_sas_token(NODE_DEVICE)


# --- reject twins ---------------------------------------------------------------------------


def test_secondary_key_is_accepted() -> None:
    token = parse_sas_token(PY_DEVICE)
    verify_sas_token(token, [OTHER_KEY, DEVICE_KEY], now=before(token))
    verify_sas_token(token, [DEVICE_KEY, OTHER_KEY], now=before(token))
    with pytest.raises(InvalidSasSignatureError):  # the twin: neither key is the signer
        verify_sas_token(token, [OTHER_KEY, OTHER_KEY], now=before(token))


def test_expiry_is_inclusive_at_se() -> None:
    token = parse_sas_token(PY_DEVICE)
    verify_sas_token(token, [DEVICE_KEY], now=before(token, 0))  # exactly at se: still good
    with pytest.raises(SasTokenExpiredError):
        verify_sas_token(token, [DEVICE_KEY], now=before(token, -0.001))
    with pytest.raises(SasTokenExpiredError):
        verify_sas_token(token, [DEVICE_KEY], now=before(token, -1))


def test_clock_skew_extends_the_expiry() -> None:
    token = parse_sas_token(PY_DEVICE)
    late = before(token, -299)
    verify_sas_token(token, [DEVICE_KEY], now=late, clock_skew=timedelta(minutes=5))
    with pytest.raises(SasTokenExpiredError):
        verify_sas_token(token, [DEVICE_KEY], now=late)


def test_a_forged_expired_token_is_reported_as_a_bad_signature() -> None:
    token = parse_sas_token(PY_DEVICE)
    with pytest.raises(InvalidSasSignatureError):
        verify_sas_token(token, [OTHER_KEY], now=before(token, -3600))


# --- several owners of one key name -----------------------------------------------------------
# A policy name exists in every service, and a device key may come from several groups: which
# owner signed is settled before the expiry is judged, whatever its place among the owners.

THIRD_KEY = base64.b64encode(b"\x03" * 32).decode()


def owners(count: int, signer: int | None) -> list[tuple[str, str]]:
    """``count`` owners' (primary, secondary) keys; the signer's secondary key is DEVICE_KEY."""
    sets = [
        (base64.b64encode(bytes([index + 16]) * 32).decode(), OTHER_KEY) for index in range(count)
    ]
    if signer is not None:
        sets[signer] = (THIRD_KEY, DEVICE_KEY)
    return sets


SIGNERS = [
    pytest.param(count, signer, id=f"{count}-owners/signer-{signer + 1}")
    for count in (1, 2, 3)
    for signer in range(count)
]


@pytest.mark.parametrize(("count", "signer"), SIGNERS)
def test_the_owner_that_signed_is_found_among_several(count: int, signer: int) -> None:
    token = parse_sas_token(PY_DEVICE)
    assert verify_sas_token_against(token, owners(count, signer), now=before(token)) == signer


@pytest.mark.parametrize(("count", "signer"), SIGNERS)
def test_an_expired_token_is_expired_whichever_owner_signed_it(count: int, signer: int) -> None:
    token = parse_sas_token(PY_DEVICE)
    with pytest.raises(SasTokenExpiredError):
        verify_sas_token_against(token, owners(count, signer), now=before(token, -1))


@pytest.mark.parametrize("count", [1, 2, 3])
def test_a_token_no_owner_signed_is_a_bad_signature_even_when_expired(count: int) -> None:
    token = parse_sas_token(PY_DEVICE)
    for now in (before(token), before(token, -3600)):
        with pytest.raises(InvalidSasSignatureError, match=f"{2 * count} key"):
            verify_sas_token_against(token, owners(count, None), now=now)


def test_every_owner_needs_a_key() -> None:
    token = parse_sas_token(PY_DEVICE)
    with pytest.raises(ValueError):
        verify_sas_token_against(token, [], now=before(token))
    with pytest.raises(ValueError):
        verify_sas_token_against(token, [(DEVICE_KEY,), ()], now=before(token))


def replaced(header: str, old: str, new: str) -> SasToken:
    assert old in header
    return parse_sas_token(header.replace(old, new))


@pytest.mark.parametrize(
    ("header", "old", "new"),
    [
        pytest.param(PY_DEVICE, "sym-device-1", "sym-device-2", id="fail/tampered-sr"),
        pytest.param(PY_DEVICE, "se=1795780846", "se=1795780847", id="fail/tampered-se"),
        pytest.param(PY_DEVICE, "%2Fregistrations%2F", "/registrations/", id="fail/py-sig-raw-sr"),
        pytest.param(NODE_DEVICE, "/registrations/", "%2Fregistrations%2F", id="fail/node-encoded"),
        pytest.param(PY_DEVICE, "%2Fregistrations%2F", "%2fregistrations%2f", id="fail/hex-case"),
        pytest.param(PY_SERVICE, "sr=localhost%3A8443", "sr=localhost:8443", id="fail/svc-raw"),
        pytest.param(PY_DEVICE, "plY%3D", "plZ%3D", id="fail/tampered-sig"),
    ],
)
def test_any_change_to_signed_text_breaks_the_signature(header: str, old: str, new: str) -> None:
    token = replaced(header, old, new)
    key = SERVICE_KEY if "provisioningservice" in header else DEVICE_KEY
    with pytest.raises(InvalidSasSignatureError):
        verify_sas_token(token, [key], now=before(token))


def test_verify_refuses_malformed_keys_naive_times_and_no_keys() -> None:
    token = parse_sas_token(PY_DEVICE)
    with pytest.raises(InvalidSymmetricKeyError):
        verify_sas_token(token, [DEVICE_KEY, "not base64!"], now=before(token))
    with pytest.raises(ValueError, match="aware"):
        verify_sas_token(token, [DEVICE_KEY], now=before(token).replace(tzinfo=None))
    with pytest.raises(ValueError, match="at least one key"):
        verify_sas_token(token, [], now=before(token))


def test_verify_tolerates_a_hand_made_token_with_odd_signature_text() -> None:
    token = SasToken("r", "ünïcode", 10, None)
    with pytest.raises(InvalidSasSignatureError):
        verify_sas_token(token, [DEVICE_KEY], now=datetime(1970, 1, 1, tzinfo=UTC))


# --- parsing --------------------------------------------------------------------------------

SIG = "sig=%2Fk2KSkItX74wzwPTe9TFODkuRTu5KHQz89sspfpyplY%3D"


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(f"SharedAccessSignature sr=a&{SIG}&se=1&skn=k", id="ok/python-order"),
        pytest.param(f"SharedAccessSignature se=1&skn=k&{SIG}&sr=a", id="ok/reversed"),
        pytest.param(f"SharedAccessSignature SR=a&{SIG.upper()[:3]}{SIG[3:]}&Se=1", id="ok/case"),
        pytest.param(f"SharedAccessSignature sr=a&&{SIG}&se=1&", id="ok/empty-fields-skipped"),
        pytest.param(f"SharedAccessSignature sr=a&{SIG}&se=1&extra=x", id="ok/unknown-ignored"),
        pytest.param(
            "SharedAccessSignature sr=a&sig=/k2KSkItX74wzwPTe9TFODkuRTu5KHQz89sspfpyplY=&se=1",
            id="ok/sig-not-encoded",
        ),
    ],
)
def test_parse_accepts(header: str) -> None:
    token = parse_sas_token(header)
    assert token.resource == "a"
    assert token.signature == "/k2KSkItX74wzwPTe9TFODkuRTu5KHQz89sspfpyplY="
    assert token.expiry == 1


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        pytest.param(f"sharedaccesssignature sr=a&{SIG}&se=1", "not a", id="fail/scheme-case"),
        pytest.param(f"Bearer sr=a&{SIG}&se=1", "not a", id="fail/bearer"),
        pytest.param(f"SharedAccessSignature  sr=a&{SIG}&se=1", "printable", id="fail/two-spaces"),
        pytest.param(f" SharedAccessSignature sr=a&{SIG}&se=1", "not a", id="fail/leading-space"),
        pytest.param(f"SharedAccessSignature sr=a&{SIG}&se=1 ", "printable", id="fail/trailing"),
        pytest.param("SharedAccessSignature", "not a", id="fail/scheme-only"),
        pytest.param("SharedAccessSignature ", "printable", id="fail/no-fields"),
        pytest.param(f"SharedAccessSignature {SIG}&se=1", "lacks sr", id="fail/missing-sr"),
        pytest.param("SharedAccessSignature sr=a&se=1", "lacks sig", id="fail/missing-sig"),
        pytest.param(f"SharedAccessSignature sr=a&{SIG}", "lacks se", id="fail/missing-se"),
        pytest.param(f"SharedAccessSignature sr=&{SIG}&se=1", "lacks sr", id="fail/empty-sr"),
        pytest.param(f"SharedAccessSignature sr=a&sr=b&{SIG}&se=1", "more than one", id="fail/dup"),
        pytest.param(
            f"SharedAccessSignature sr=a&SR=b&{SIG}&se=1", "more than one", id="fail/dup-case"
        ),
        pytest.param(
            f"SharedAccessSignature sr=a&{SIG}&se=1&se=2", "more than one", id="fail/dup-se"
        ),
        pytest.param(
            f"SharedAccessSignature sr=a&{SIG}&se=1&skn=a&skn=b", "more", id="fail/dup-skn"
        ),
        pytest.param(f"SharedAccessSignature sr=a&{SIG}&se", "name=value", id="fail/no-equals"),
        pytest.param(f"SharedAccessSignature sr=a&{SIG}&=x&se=1", "name=value", id="fail/no-name"),
        pytest.param(f"SharedAccessSignature sr=a&{SIG}&se=1.5", "se", id="fail/se-fraction"),
        pytest.param(f"SharedAccessSignature sr=a&{SIG}&se=-1", "se", id="fail/se-negative"),
        pytest.param(f"SharedAccessSignature sr=a&{SIG}&se=%2B1", "se", id="fail/se-plus"),
        pytest.param(f"SharedAccessSignature sr=a&{SIG}&se=1_0", "se", id="fail/se-underscore"),
        pytest.param(f"SharedAccessSignature sr=a&{SIG}&se=1e9", "se", id="fail/se-exponent"),
        pytest.param(f"SharedAccessSignature sr=a&{SIG}&se=01", "se", id="fail/se-leading-zero"),
        pytest.param(
            f"SharedAccessSignature sr=a&{SIG}&se={MAX_EXPIRY + 1}", "se", id="fail/se-too-far"
        ),
        pytest.param("SharedAccessSignature sr=a&sig=abc&se=1", "sig", id="fail/sig-short"),
        pytest.param(
            "SharedAccessSignature sr=a&sig=" + "A" * 44 + "&se=1", "sig", id="fail/sig-unpadded"
        ),
        pytest.param(
            "SharedAccessSignature sr=a&sig=" + "-" * 43 + "%3D&se=1", "sig", id="fail/sig-urlsafe"
        ),
        pytest.param(
            "SharedAccessSignature sr=a&sig=" + "A" * 42 + "%3D%3D&se=1",
            "sig",
            id="fail/sig-31-bytes",
        ),
        pytest.param(f"SharedAccessSignature sr=a&{SIG}&se=1&skn=", "skn", id="fail/empty-skn"),
        pytest.param(
            f"SharedAccessSignature sr=a&{SIG}&se=1&skn=" + "k" * 257, "skn", id="fail/long-skn"
        ),
        pytest.param(f"SharedAccessSignature sr=é&{SIG}&se=1", "printable", id="fail/non-ascii"),
        pytest.param(f"SharedAccessSignature sr=a\t&{SIG}&se=1", "printable", id="fail/tab"),
    ],
)
def test_parse_rejects(header: str, reason: str) -> None:
    with pytest.raises(MalformedSasTokenError, match=reason):
        parse_sas_token(header)


def test_parse_bounds_the_length() -> None:
    padding = "x" * MAX_SAS_TOKEN_LENGTH
    with pytest.raises(MalformedSasTokenError, match="at most"):
        parse_sas_token(f"SharedAccessSignature sr={padding}&{SIG}&se=1")


def test_signature_keeps_plus_signs_sent_unencoded() -> None:
    sig = "a+b/" + "A" * 39 + "="
    token = parse_sas_token(f"SharedAccessSignature sr=a&sig={sig}&se=1")
    assert token.signature == sig  # unquote, not unquote_plus


@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_malformed(header: str) -> None:
    try:
        token = parse_sas_token(header)
    except MalformedSasTokenError:
        return
    assert header.startswith("SharedAccessSignature ")
    assert token.resource


_FIELD = st.sampled_from(["sr", "sig", "se", "skn", "SR", "x", ""])
_VALUE = st.one_of(
    st.text(alphabet="0123456789%2FABab+/=&", max_size=50),
    st.just("%2Fk2KSkItX74wzwPTe9TFODkuRTu5KHQz89sspfpyplY%3D"),
    st.integers(min_value=-5, max_value=10**13).map(str),
)


@given(st.lists(st.tuples(_FIELD, _VALUE), max_size=6))
def test_arbitrary_field_lists_raise_only_malformed(fields: list[tuple[str, str]]) -> None:
    header = "SharedAccessSignature " + "&".join(f"{k}={v}" for k, v in fields)
    try:
        token = parse_sas_token(header)
    except MalformedSasTokenError:
        return
    assert 0 <= token.expiry <= MAX_EXPIRY


# --- round trips ----------------------------------------------------------------------------

_KEYS = st.binary(min_size=16, max_size=64).map(lambda b: base64.b64encode(b).decode())


@given(_KEYS, st.text(min_size=1, max_size=200), st.integers(0, MAX_EXPIRY), st.booleans())
def test_built_tokens_parse_and_verify(key: str, resource: str, expiry: int, named: bool) -> None:
    header = build_sas_token(key, resource, expiry, "policy" if named else None)
    token = parse_sas_token(header)
    assert token.resource == quote(resource, safe="")
    assert token.key_name == ("policy" if named else None)
    verify_sas_token(token, [key], now=datetime(1970, 1, 1, tzinfo=UTC))


@given(_KEYS, st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._:-]{0,60}[A-Za-z0-9-])?", fullmatch=True))
def test_raw_device_tokens_round_trip_and_match(key: str, registration_id: str) -> None:
    resource = f"{SCOPE}/registrations/{registration_id}"
    header = build_sas_token(key, resource, 1795781053, "registration", encode_resource=False)
    token = parse_sas_token(header)
    assert token.resource == resource
    verify_sas_token(token, [key], now=datetime(2026, 11, 27, tzinfo=UTC))
    assert resource_matches_device(token.resource, SCOPE.upper(), registration_id.upper())


def test_builder_refuses_what_the_parser_would_not_take_back() -> None:
    with pytest.raises(ValueError, match="unencoded"):
        build_sas_token(DEVICE_KEY, "a&b", 1, encode_resource=False)
    with pytest.raises(ValueError, match="unencoded"):
        build_sas_token(DEVICE_KEY, "a b", 1, encode_resource=False)
    with pytest.raises(ValueError, match="se must"):
        build_sas_token(DEVICE_KEY, "a", -1)


# --- resources ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "matches"),
    [
        pytest.param("0ne00000001%2Fregistrations%2Fsym-device-1", True, id="ok/encoded"),
        pytest.param("0ne00000001/registrations/sym-device-1", True, id="ok/raw"),
        pytest.param("0NE00000001%2fREGISTRATIONS%2fSYM-DEVICE-1", True, id="ok/case"),
        pytest.param("0ne00000001%252Fregistrations%252Fsym-device-1", False, id="fail/double"),
        pytest.param("0ne00000002/registrations/sym-device-1", False, id="fail/other-scope"),
        pytest.param("0ne00000001/registrations/sym-device-10", False, id="fail/longer-id"),
        pytest.param("0ne00000001/registrations/sym-device-1/x", False, id="fail/sub-path"),
        pytest.param("0ne00000001/registrations", False, id="fail/prefix"),
        pytest.param("localhost/0ne00000001/registrations/sym-device-1", False, id="fail/host"),
    ],
)
def test_device_resource(resource: str, matches: bool) -> None:
    assert resource_matches_device(resource, SCOPE, DEVICE) is matches


@pytest.mark.parametrize(
    ("resource", "path", "matches"),
    [
        pytest.param("localhost", "", True, id="ok/host"),
        pytest.param("localhost%3A8443", "", True, id="ok/host-port"),
        pytest.param("LOCALHOST%3A8443", "", True, id="ok/upper-case"),
        pytest.param("https%3A%2F%2Flocalhost%3A8443%2F", "", True, id="ok/url-trailing-slash"),
        pytest.param("http://127.0.0.1:8081", "", True, id="ok/raw-url"),
        pytest.param("localhost", "/enrollments/dev1", True, id="ok/host-covers-path"),
        pytest.param("localhost/enrollments", "/enrollments/dev1", True, id="ok/segment-prefix"),
        pytest.param("localhost/enrollments", "/Enrollments/dev1", True, id="ok/path-case"),
        pytest.param("localhost/enrollments", "enrollments", True, id="ok/relative-path"),
        pytest.param("localhost/enroll", "/enrollments/dev1", False, id="fail/partial-segment"),
        pytest.param("localhost/enrollments", "", False, id="fail/scoped-below-host"),
        pytest.param("localhost/enrollments", "/enrollmentGroups/g", False, id="fail/other-path"),
        pytest.param("localhost%3A84", "", False, id="fail/port-prefix"),
        pytest.param("localhost%3A9443", "", False, id="fail/other-port"),
        pytest.param("evil.example", "", False, id="fail/other-host"),
        pytest.param("localhost.evil.example", "", False, id="fail/suffix-host"),
        pytest.param("ftp%3A%2F%2Flocalhost", "", False, id="fail/other-scheme"),
        pytest.param("https%3A%2F%2F", "", False, id="fail/scheme-only"),
        pytest.param("", "", False, id="fail/empty"),
        pytest.param("%2F", "", False, id="fail/slash-only"),
    ],
)
def test_service_resource(resource: str, path: str, matches: bool) -> None:
    assert resource_matches_service(resource, HOSTS, path=path) is matches


def test_service_resource_ignores_empty_host_names() -> None:
    assert not resource_matches_service("localhost", {"", "/"})
    assert resource_matches_service("localhost", {"https://LOCALHOST/"})


# --- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(base64.b64encode(b"k" * 15).decode(), "16 to 64", id="fail/15-bytes"),
        pytest.param(base64.b64encode(b"k" * 65).decode(), "16 to 64", id="fail/65-bytes"),
        pytest.param(base64.b64encode(b"k" * 67).decode(), "at most", id="fail/67-bytes-long-text"),
        pytest.param("", "16 to 64", id="fail/empty"),
        pytest.param("not base64!", "base64", id="fail/not-base64"),
        pytest.param(DEVICE_KEY.rstrip("="), "base64", id="fail/unpadded"),
        pytest.param(DEVICE_KEY.replace("Z", "-"), "base64", id="fail/urlsafe"),
        pytest.param(" " + DEVICE_KEY, "base64", id="fail/space"),
        pytest.param("é" * 44, "base64", id="fail/non-ascii"),
    ],
)
def test_symmetric_key_rejects(value: str, reason: str) -> None:
    with pytest.raises(InvalidSymmetricKeyError, match=reason) as caught:
        parse_symmetric_key(value)
    assert value not in caught.value.message or not value


@pytest.mark.parametrize("size", [16, 32, 64])
def test_symmetric_key_accepts_16_to_64_bytes(size: int) -> None:
    raw = bytes(range(size))
    assert parse_symmetric_key(base64.b64encode(raw).decode()) == raw


@given(st.text(max_size=120))
def test_arbitrary_keys_raise_only_invalid_key(value: str) -> None:
    try:
        key = parse_symmetric_key(value)
    except InvalidSymmetricKeyError:
        return
    assert 16 <= len(key) <= 64


def test_derived_device_key_follows_the_documented_formula() -> None:
    derived = derive_device_key(SERVICE_KEY, "Sym-Device-1")
    assert derived == reference_signature(SERVICE_KEY, "Sym-Device-1")
    assert derived != derive_device_key(
        SERVICE_KEY, "sym-device-1"
    )  # the id as the device spells it
    assert len(base64.b64decode(derived)) == 32
    with pytest.raises(InvalidSymmetricKeyError):
        derive_device_key("short", DEVICE)


def test_a_device_of_a_group_signs_with_its_derived_key() -> None:
    device_key = derive_device_key(SERVICE_KEY, DEVICE)
    token = parse_sas_token(build_sas_token(device_key, f"{SCOPE}/registrations/{DEVICE}", 100))
    verify_sas_token(token, [device_key], now=datetime(1970, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidSasSignatureError):
        verify_sas_token(token, [SERVICE_KEY], now=datetime(1970, 1, 1, tzinfo=UTC))


# --- rights ---------------------------------------------------------------------------------


def test_right_values_are_arms_spellings() -> None:
    assert [r.value for r in Right] == [
        "ServiceConfig",
        "EnrollmentRead",
        "EnrollmentWrite",
        "DeviceConnect",
        "RegistrationStatusRead",
        "RegistrationStatusWrite",
    ]


def test_require_right() -> None:
    require_right({"EnrollmentRead", "EnrollmentWrite"}, Right.ENROLLMENT_WRITE, "p")
    require_right(["enrollmentread "], Right.ENROLLMENT_READ, "p")
    with pytest.raises(MissingRightError, match="'reader' does not grant EnrollmentWrite"):
        require_right({"EnrollmentRead"}, Right.ENROLLMENT_WRITE, "reader")
    with pytest.raises(MissingRightError):
        require_right(set(), Right.SERVICE_CONFIG, "empty")
    with pytest.raises(TypeError):
        require_right("EnrollmentRead", Right.ENROLLMENT_READ, "p")


# --- connection strings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host_name"),
    [
        pytest.param("https://localhost:443", "localhost", id="ok/443-left-out"),
        pytest.param("https://localhost:8443", "localhost:8443", id="ok/other-port-kept"),
        pytest.param("https://localhost", "localhost", id="ok/no-port"),
        pytest.param("https://dps.example.net:443/", "dps.example.net", id="ok/443-trailing-slash"),
        pytest.param("https://dps.example.net:4430", "dps.example.net:4430", id="ok/4430-kept"),
        pytest.param("https://[::1]:443", "[::1]", id="ok/ipv6-443-left-out"),
        pytest.param("https://[::1]:8443", "[::1]:8443", id="ok/ipv6-other-port-kept"),
        pytest.param("https://127.0.0.1:443", "127.0.0.1", id="ok/ipv4-443-left-out"),
        pytest.param("https://127.0.0.1:44300", "127.0.0.1:44300", id="ok/ipv4-other-port-kept"),
        pytest.param("localhost:443", "localhost", id="ok/no-scheme-443-left-out"),
        pytest.param("localhost:9443", "localhost:9443", id="ok/no-scheme-port-kept"),
        pytest.param("https://localhost:port", "localhost:port", id="ok/not-a-port-left-as-given"),
    ],
)
def test_host_name_leaves_out_only_port_443(url: str, host_name: str) -> None:
    assert build_host_name(url) == host_name


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("https://localhost:443", "HostName=localhost;", id="ok/443"),
        pytest.param("https://localhost:8443", "HostName=localhost:8443;", id="ok/8443"),
    ],
)
def test_connection_string(url: str, expected: str) -> None:
    text = build_connection_string(url, "provisioningserviceowner", SERVICE_KEY)
    assert (
        text
        == f"{expected}SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={SERVICE_KEY}"
    )
