"""What the Python driver checks share: the DSN e2e/TestClientDrivers passes
in SHARDWIRE_DSN, the list of failures, and how a check run ends."""
import os
import sys

DSN = os.environ["SHARDWIRE_DSN"]
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def finish(driver, version):
    """Exits non-zero with every failure, or prints the line the Go test
    looks for."""
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    print(driver, version, "ok")
