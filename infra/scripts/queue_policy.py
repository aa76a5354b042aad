#!/usr/bin/env python3
"""Add or remove the demo statement that denies a producer's task role sqs:SendMessage on a queue.

Reads the JSON printed by `aws sqs get-queue-attributes --attribute-names Policy QueueArn`
on stdin and prints the `--attributes` JSON for `aws sqs set-queue-attributes`. Every other
statement of the policy (the TLS-only deny that CDK wrote, anything added by hand) is kept.
The statement's Sid is DemoDenyBookingSend (booking-service on bookings.fifo) unless --sid says
otherwise (queue-demo-common.sh uses DemoDenyPaymentSend for payment-events.fifo).

    queue_policy.py block --role-arn ARN [--sid SID] < attributes.json
    queue_policy.py unblock [--sid SID] < attributes.json
"""

import argparse
import json
import sys

SID = "DemoDenyBookingSend"


def deny_statement(queue_arn, role_arn, sid=SID):
    return {
        "Sid": sid,
        "Effect": "Deny",
        "Principal": {"AWS": role_arn},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
    }


def _statements(policy):
    statements = (policy or {}).get("Statement", [])
    # IAM allows a single statement object instead of a list.
    return [statements] if isinstance(statements, dict) else list(statements)


def is_blocked(policy, sid=SID):
    return any(s.get("Sid") == sid for s in _statements(policy))


def block(policy, queue_arn, role_arn, sid=SID):
    """The policy with exactly one demo deny statement (replacing an older one)."""
    policy = dict(policy or {"Version": "2012-10-17"})
    others = [s for s in _statements(policy) if s.get("Sid") != sid]
    policy["Statement"] = others + [deny_statement(queue_arn, role_arn, sid)]
    return policy


def unblock(policy, sid=SID):
    """The policy without the demo statement; None when nothing would be left."""
    if policy is None:
        return None
    others = [s for s in _statements(policy) if s.get("Sid") != sid]
    if not others:
        return None
    return dict(policy, Statement=others)


def set_attributes(policy):
    # An empty Policy attribute removes the queue policy.
    return {"Policy": json.dumps(policy, separators=(",", ":")) if policy else ""}


def main(argv=None, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    block_parser = sub.add_parser("block", help="add the deny statement")
    block_parser.add_argument("--role-arn", required=True, help="the producer's task role ARN")
    unblock_parser = sub.add_parser("unblock", help="remove the deny statement")
    for p in (block_parser, unblock_parser):
        p.add_argument("--sid", default=SID, help=f"Sid of the demo statement (default {SID})")
    args = parser.parse_args(argv)

    attributes = json.load(stdin).get("Attributes", {})
    policy = json.loads(attributes["Policy"]) if attributes.get("Policy") else None

    if args.action == "block":
        queue_arn = attributes.get("QueueArn")
        if not queue_arn:
            parser.error("QueueArn missing from the attributes on stdin")
        new_policy = block(policy, queue_arn, args.role_arn, args.sid)
        note = "replaced the existing" if is_blocked(policy, args.sid) else "added the"
    else:
        new_policy = unblock(policy, args.sid)
        note = "removed the" if is_blocked(policy, args.sid) else "there was no"

    print(f"{note} {args.sid} statement", file=stderr)
    json.dump(set_attributes(new_policy), stdout)
    stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
