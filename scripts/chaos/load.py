"""Steady booking load for scripts/chaos.sh: COUNT bookings at RATE per second,
each retried with its own Idempotency-Key until booking-service answers 201
(connection refused, timeouts, 5xx and 429 are retried; a 4xx is a failure), as
a careful client would during an outage. Prints one booked flight id per line to
OUT. Standard library only."""

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor


def book(base, n, deadline):
    body = json.dumps({
        "departureAirport": "Paris", "arrivalAirport": "London",
        "departureDateTime": "2023-09-01T08:00:00Z", "arrivalDateTime": "2023-09-01T08:15:00Z",
        "passengerName": f"Chaos {n}", "fare": {"amount": 9900 + n % 100, "currency": "EUR"},
    }).encode()
    key = str(uuid.uuid4())
    delay = 0.2
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            f"{base}/api/flights", data=body, method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": key})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                if response.status == 201:
                    return json.load(response)["id"], None
        except urllib.error.HTTPError as e:
            if e.code < 500 and e.code != 429:
                return None, f"booking {n}: HTTP {e.code}"
        except (urllib.error.URLError, OSError, TimeoutError):
            pass
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
    return None, f"booking {n}: no 201 before the deadline"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--give-up-after", type=float, default=600)
    args = parser.parse_args()
    deadline = time.monotonic() + args.give_up_after
    lock = threading.Lock()
    failures = []
    started = time.monotonic()
    with open(args.out, "w") as out, ThreadPoolExecutor(max_workers=32) as pool:
        def one(n):
            time.sleep(max(0.0, started + n / args.rate - time.monotonic()))
            flight, error = book(args.base, n, deadline)
            with lock:
                if flight:
                    out.write(flight + "\n")
                    out.flush()
                else:
                    failures.append(error)
        list(pool.map(one, range(args.count)))
    for failure in failures[:5]:
        print(failure, file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
