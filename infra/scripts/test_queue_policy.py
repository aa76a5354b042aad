"""Tests for queue_policy.py and, through a fake `aws` on PATH, for block-queue.sh / unblock-queue.sh
and redrive-dlq.sh --dry-run.

    python3 -m unittest discover -s infra/scripts -p 'test_*.py'
"""

import io
import json
import os
import pathlib
import stat
import subprocess
import tempfile
import textwrap
import unittest

import queue_policy

QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:bookings.fifo"
QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/bookings.fifo"
ROLE_ARN = "arn:aws:iam::123456789012:role/OutboxServices-BookingTaskTaskRole-ABC"
DLQ_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/bookings-dlq.fifo"
PAYMENT_EVENTS_ARN = "arn:aws:sqs:eu-west-1:123456789012:payment-events.fifo"
PAYMENT_EVENTS_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/payment-events.fifo"
PAYMENT_EVENTS_DLQ_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/payment-events-dlq.fifo"
PAYMENT_ROLE_ARN = "arn:aws:iam::123456789012:role/OutboxServices-PaymentTaskTaskRole-DEF"
TLS_ONLY = {
    "Effect": "Deny",
    "Principal": {"AWS": "*"},
    "Action": "sqs:*",
    "Resource": QUEUE_ARN,
    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
}
CDK_POLICY = {"Version": "2012-10-17", "Statement": [TLS_ONLY]}


class PolicyMergeTest(unittest.TestCase):
    def test_block_adds_the_deny_and_keeps_the_other_statements(self):
        policy = queue_policy.block(CDK_POLICY, QUEUE_ARN, ROLE_ARN)
        self.assertEqual(policy["Version"], "2012-10-17")
        self.assertEqual(policy["Statement"][0], TLS_ONLY)
        self.assertEqual(
            policy["Statement"][1],
            {
                "Sid": "DemoDenyBookingSend",
                "Effect": "Deny",
                "Principal": {"AWS": ROLE_ARN},
                "Action": "sqs:SendMessage",
                "Resource": QUEUE_ARN,
            },
        )
        self.assertEqual(len(CDK_POLICY["Statement"]), 1, "the input must not be mutated")

    def test_block_twice_is_the_same_as_once(self):
        once = queue_policy.block(CDK_POLICY, QUEUE_ARN, ROLE_ARN)
        self.assertEqual(queue_policy.block(once, QUEUE_ARN, ROLE_ARN), once)

    def test_block_replaces_a_stale_deny_for_another_role(self):
        stale = queue_policy.block(CDK_POLICY, QUEUE_ARN, "arn:aws:iam::123456789012:role/old")
        policy = queue_policy.block(stale, QUEUE_ARN, ROLE_ARN)
        denies = [s for s in policy["Statement"] if s.get("Sid") == "DemoDenyBookingSend"]
        self.assertEqual([d["Principal"]["AWS"] for d in denies], [ROLE_ARN])

    def test_block_without_a_policy_creates_one(self):
        policy = queue_policy.block(None, QUEUE_ARN, ROLE_ARN)
        self.assertEqual(policy["Version"], "2012-10-17")
        self.assertEqual([s["Sid"] for s in policy["Statement"]], ["DemoDenyBookingSend"])

    def test_a_single_statement_object_is_accepted(self):
        policy = queue_policy.block({"Version": "2012-10-17", "Statement": TLS_ONLY}, QUEUE_ARN, ROLE_ARN)
        self.assertEqual(policy["Statement"][0], TLS_ONLY)
        self.assertEqual(len(policy["Statement"]), 2)

    def test_unblock_removes_only_the_demo_statement(self):
        other = {"Sid": "SomethingElse", "Effect": "Allow", "Principal": {"AWS": ROLE_ARN}, "Action": "sqs:GetQueueUrl", "Resource": QUEUE_ARN}
        blocked = queue_policy.block({"Version": "2012-10-17", "Statement": [TLS_ONLY, other]}, QUEUE_ARN, ROLE_ARN)
        self.assertEqual(queue_policy.unblock(blocked), {"Version": "2012-10-17", "Statement": [TLS_ONLY, other]})

    def test_unblock_is_idempotent_and_clears_an_emptied_policy(self):
        self.assertEqual(queue_policy.unblock(CDK_POLICY), CDK_POLICY)
        self.assertIsNone(queue_policy.unblock(None))
        self.assertIsNone(queue_policy.unblock(queue_policy.block(None, QUEUE_ARN, ROLE_ARN)))
        self.assertEqual(queue_policy.set_attributes(None), {"Policy": ""})

    def test_another_sid_leaves_the_default_statement_alone(self):
        bookings_blocked = queue_policy.block(CDK_POLICY, QUEUE_ARN, ROLE_ARN)
        both = queue_policy.block(bookings_blocked, QUEUE_ARN, PAYMENT_ROLE_ARN, sid="DemoDenyPaymentSend")
        self.assertEqual([s.get("Sid") for s in both["Statement"]], [None, "DemoDenyBookingSend", "DemoDenyPaymentSend"])
        self.assertEqual(queue_policy.unblock(both, sid="DemoDenyPaymentSend"), bookings_blocked)

    def test_main_turns_get_attributes_output_into_set_attributes_input(self):
        attributes = {"Attributes": {"QueueArn": QUEUE_ARN, "Policy": json.dumps(CDK_POLICY)}}
        out, err = io.StringIO(), io.StringIO()
        code = queue_policy.main(["block", "--role-arn", ROLE_ARN], io.StringIO(json.dumps(attributes)), out, err)
        self.assertEqual(code, 0)
        written = json.loads(json.loads(out.getvalue())["Policy"])
        self.assertEqual(written, queue_policy.block(CDK_POLICY, QUEUE_ARN, ROLE_ARN))
        self.assertIn("added the DemoDenyBookingSend", err.getvalue())


# A stand-in for the AWS CLI: answers the three calls the scripts make, from a JSON state file.
FAKE_AWS = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    import json, os, re, sys
    state_path = os.environ["FAKE_AWS_STATE"]
    state = json.load(open(state_path))
    args = sys.argv[1:]
    def opt(name):
        return args[args.index(name) + 1]
    state.setdefault("calls", []).append(args[:2])
    if args[:2] == ["cloudformation", "describe-stacks"]:
        key = re.search(r"OutputKey=='(\\w+)'", opt("--query")).group(1)
        print(state["outputs"].get(opt("--stack-name"), {}).get(key, "None"))
    elif args[:2] == ["sqs", "get-queue-attributes"] and "--query" in args:
        # redrive-dlq.sh: one attribute as text, from the "queues" map.
        queue = state["queues"][opt("--queue-url")]
        print(queue[opt("--query").removeprefix("Attributes.")])
    elif args[:2] == ["sqs", "get-queue-attributes"]:
        assert opt("--queue-url") == state["queue_url"], "wrong queue"
        attributes = {"QueueArn": state["queue_arn"]}
        if state.get("policy"):
            attributes["Policy"] = state["policy"]
        print(json.dumps({"Attributes": attributes}))
    elif args[:2] == ["sqs", "set-queue-attributes"]:
        assert opt("--queue-url") == state["queue_url"], "wrong queue"
        state["policy"] = json.loads(opt("--attributes"))["Policy"]
    else:
        sys.exit("fake aws: unexpected call %s" % args)
    json.dump(state, open(state_path, "w"))
    """
)


class ScriptsTest(unittest.TestCase):
    scripts = pathlib.Path(__file__).resolve().parent

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        bin_dir = pathlib.Path(self.tmp.name, "bin")
        bin_dir.mkdir()
        aws = bin_dir / "aws"
        aws.write_text(FAKE_AWS)
        aws.chmod(aws.stat().st_mode | stat.S_IEXEC)
        self.state = pathlib.Path(self.tmp.name, "state.json")
        self.state.write_text(
            json.dumps(
                {
                    "queue_url": QUEUE_URL,
                    "queue_arn": QUEUE_ARN,
                    "policy": json.dumps(CDK_POLICY),
                    "outputs": {
                        "OutboxMessaging": {
                            "QueueUrl": QUEUE_URL,
                            "DeadLetterQueueUrl": DLQ_URL,
                            "PaymentEventsQueueUrl": PAYMENT_EVENTS_URL,
                            "PaymentEventsDeadLetterQueueUrl": PAYMENT_EVENTS_DLQ_URL,
                        },
                        "OutboxServices": {"BookingTaskRoleArn": ROLE_ARN, "PaymentTaskRoleArn": PAYMENT_ROLE_ARN},
                    },
                    "queues": {
                        url: {"QueueArn": url.replace("https://sqs.eu-west-1.amazonaws.com/123456789012/",
                                                      "arn:aws:sqs:eu-west-1:123456789012:"),
                              "ApproximateNumberOfMessages": str(waiting)}
                        for url, waiting in [(QUEUE_URL, 0), (DLQ_URL, 2), (PAYMENT_EVENTS_URL, 0), (PAYMENT_EVENTS_DLQ_URL, 3)]
                    },
                }
            )
        )
        self.env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_AWS_STATE=str(self.state))
        for name in ("QUEUE_URL", "DLQ_URL", "BOOKING_ROLE_ARN", "PAYMENT_ROLE_ARN", "MESSAGING_STACK", "SERVICES_STACK"):
            self.env.pop(name, None)

    def run_script(self, name, *args):
        return subprocess.run(
            ["bash", str(self.scripts / name), *args], env=self.env, capture_output=True, text=True, check=True
        )

    def policy(self):
        return json.loads(json.loads(self.state.read_text())["policy"])

    def test_block_then_unblock_round_trip_from_stack_outputs(self):
        self.run_script("block-queue.sh")
        self.run_script("block-queue.sh")
        self.assertEqual(self.policy(), queue_policy.block(CDK_POLICY, QUEUE_ARN, ROLE_ARN))
        self.run_script("unblock-queue.sh")
        self.run_script("unblock-queue.sh")
        self.assertEqual(self.policy(), CDK_POLICY)

    def test_arguments_win_over_stack_outputs(self):
        other_role = "arn:aws:iam::123456789012:role/other"
        self.run_script("block-queue.sh", "--queue-url", QUEUE_URL, "--role-arn", other_role)
        self.assertEqual(self.policy()["Statement"][-1]["Principal"], {"AWS": other_role})
        calls = json.loads(self.state.read_text())["calls"]
        self.assertNotIn(["cloudformation", "describe-stacks"], calls)

    def use_payment_events_queue(self):
        state = json.loads(self.state.read_text())
        state.update(queue_url=PAYMENT_EVENTS_URL, queue_arn=PAYMENT_EVENTS_ARN)
        state["policy"] = json.dumps(dict(CDK_POLICY, Statement=[dict(TLS_ONLY, Resource=PAYMENT_EVENTS_ARN)]))
        self.state.write_text(json.dumps(state))
        return json.loads(state["policy"])

    def test_queue_payment_events_blocks_payment_service_on_payment_events_fifo(self):
        original = self.use_payment_events_queue()
        # The fake refuses any other queue URL, so this also checks the output the URL came from.
        self.run_script("block-queue.sh", "--queue", "payment-events")
        self.assertEqual(
            self.policy(), queue_policy.block(original, PAYMENT_EVENTS_ARN, PAYMENT_ROLE_ARN, sid="DemoDenyPaymentSend")
        )
        unblocked = self.run_script("unblock-queue.sh", "--queue", "payment-events")
        self.assertEqual(self.policy(), original)
        self.assertIn("payment-service", unblocked.stdout)

    def test_an_unknown_queue_is_refused(self):
        for script in ("block-queue.sh", "unblock-queue.sh", "redrive-dlq.sh"):
            with self.assertRaises(subprocess.CalledProcessError) as failure:
                self.run_script(script, "--queue", "payments")
            self.assertIn("unknown queue: payments", failure.exception.stderr)
        self.assertEqual(self.policy(), CDK_POLICY)

    def test_redrive_dry_run_counts_the_dlq_of_the_chosen_queue(self):
        bookings = self.run_script("redrive-dlq.sh", "--dry-run")
        self.assertEqual(bookings.stdout.splitlines(), ["2 message(s) in arn:aws:sqs:eu-west-1:123456789012:bookings-dlq.fifo"])
        payment_events = self.run_script("redrive-dlq.sh", "--dry-run", "--queue", "payment-events")
        self.assertEqual(
            payment_events.stdout.splitlines(), ["3 message(s) in arn:aws:sqs:eu-west-1:123456789012:payment-events-dlq.fifo"]
        )
        calls = json.loads(self.state.read_text())["calls"]
        self.assertNotIn(["sqs", "start-message-move-task"], calls)

    def test_a_missing_stack_output_is_an_error(self):
        self.env["SERVICES_STACK"] = "NotDeployed"
        with self.assertRaises(subprocess.CalledProcessError) as failure:
            self.run_script("block-queue.sh")
        self.assertIn("has no output BookingTaskRoleArn", failure.exception.stderr)
        self.assertEqual(self.policy(), CDK_POLICY)


if __name__ == "__main__":
    unittest.main()
