"""The local CA: keys, certificates, chains and PKCS#12 files on disk, for ``devprov ca``.

The certificate profiles are :mod:`devprov.core.issuance`'s. This package does what the pure core
must not: it draws randomness (keys, serial numbers) and reads and writes files. It replaces the
Azure C SDK's certGen.sh (docs/sdk-clients.md#certgensh) and fixes what users fight there:

- EC P-256 by default; EC P-384 and RSA 2048/3072/4096 on request (certGen.sh: RSA-4096 only);
- a key is encrypted only with a password the operator supplies (certGen.sh: "1234" hard-coded),
  is written with mode 0600 and never replaces an existing file unless asked to;
- every certificate gets a chain file, and a device also gets the full-chain file it must present
  (docs/attestation.md#the-device-presents-its-chain; certGen.sh deletes that file but never
  writes it, docs/sdk-clients.md#certgensh-files);
- an issuer is checked before it signs: a CA, holding the matching key, not expired, with room
  left in its pathLen, and a child never outlives it.

Its modules, each importing only those before it:

- :mod:`.error`: the errors, numbers 400150-400161 and 404165;
- :mod:`.file`: ``PkiFiles``, the readers and the all-or-nothing writers;
- :mod:`.issuer`: loading an issuer and the checks it must pass before it signs;
- :mod:`.ca`: key types and serials, name checks, and the use cases (root, intermediate, device,
  verification, demo).

Callers import from the module that owns a name; this package re-exports nothing.
"""
