"""The local CA's errors: numbers 400150-400161 and 404165 are this package's.

Their codes, numbers and docstrings are public: ``devprov errors`` and docs/errors.md are made
from them, and ``devprov ca`` reports them.
"""

from __future__ import annotations

from devprov.core.error import InvalidInputError, NotFoundError

# 400155, InvalidRegistrationId, moved to core.error together with the registration id rule.


class KeyPasswordRequiredError(InvalidInputError):
    """The private key is encrypted; give its password file."""

    code = "KeyPasswordRequired"
    number = 400150


class WrongKeyPasswordError(InvalidInputError):
    """The password does not decrypt the private key."""

    code = "WrongKeyPassword"
    number = 400151


class KeyNotEncryptedError(InvalidInputError):
    """A password was given for a key that is not encrypted."""

    code = "KeyNotEncrypted"
    number = 400152


class MalformedKeyError(InvalidInputError):
    """The key file is not a PEM private key."""

    code = "MalformedPrivateKey"
    number = 400153


class InvalidPasswordFileError(InvalidInputError):
    """The password file is empty or unreadable."""

    code = "InvalidPasswordFile"
    number = 400154


class InvalidCommonNameError(InvalidInputError):
    """A subject CN is empty or longer than 64 characters."""

    code = "InvalidCommonName"
    number = 400156


class IssuerKeyMismatchError(InvalidInputError):
    """The issuer's key does not belong to its certificate."""

    code = "IssuerKeyMismatch"
    number = 400157


class InvalidIssuerChainError(InvalidInputError):
    """The issuer is not a CA that may sign (keyUsage, chain file)."""

    code = "InvalidIssuerChain"
    number = 400158


class PathLengthExceededError(InvalidInputError):
    """The issuer's pathLen leaves no room for another CA."""

    code = "PathLengthExceeded"
    number = 400159


class IssuerExpiresTooSoonError(InvalidInputError):
    """The issuer expires within a day; renew it first."""

    code = "IssuerExpiresTooSoon"
    number = 400160


class FileAccessError(InvalidInputError):
    """A file named on the command line could not be read or written (a directory, no
    permission, or it exists and --force was not given)."""

    code = "FileAccessFailed"
    number = 400161


class PkiFileNotFoundError(NotFoundError):
    """A file named on the command line (certificate, key, password, CA or JSON file) does not
    exist."""

    code = "PkiFileNotFound"
    number = 404165
