"""The command line: the server, CA tooling and a client of devprov's APIs."""
