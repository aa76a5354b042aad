import unittest

from checkov_gate import gate


def report(*failed):
    return {
        "check_type": "cloudformation",
        "results": {
            "failed_checks": [
                {"check_id": c, "file_path": f"/cdk.out/{stack}.template.json", "resource": r, "check_name": "n"}
                for c, stack, r in failed
            ]
        },
    }


BASELINE = [
    {"check": "CKV_AWS_158", "resources": ["*:AWS::Logs::LogGroup.*"], "reason": "default encryption"},
    {"check": "CKV_AWS_91", "resources": ["OutboxServices:AWS::ElasticLoadBalancingV2::LoadBalancer.*"], "reason": "r"},
    {"check": "CKV_AWS_192", "resources": ["OutboxServices:AWS::WAFv2::WebACL.WebAcl"], "reason": "no Java"},
]


class GateTest(unittest.TestCase):
    def test_accepted_findings_pass(self):
        new, unused = gate(
            BASELINE,
            [report(("CKV_AWS_158", "OutboxData", "AWS::Logs::LogGroup.PostgresLogs1"),
                    ("CKV_AWS_91", "OutboxServices", "AWS::ElasticLoadBalancingV2::LoadBalancer.Lb1"))],
        )
        self.assertEqual(new, [])
        self.assertEqual([e["check"] for e in unused], ["CKV_AWS_192"])

    def test_a_new_check_fails(self):
        new, _ = gate(BASELINE, [report(("CKV_AWS_27", "OutboxMessaging", "AWS::SQS::Queue.Q1"))])
        self.assertEqual(new, [("CKV_AWS_27", "OutboxMessaging:AWS::SQS::Queue.Q1", "n")])

    def test_a_known_check_on_another_resource_fails(self):
        new, _ = gate(BASELINE, [report(("CKV_AWS_91", "OutboxData", "AWS::ElasticLoadBalancingV2::LoadBalancer.Lb1"))])
        self.assertEqual(len(new), 1)

    def test_several_reports_and_list_output(self):
        new, unused = gate(
            BASELINE,
            [report(("CKV_AWS_158", "OutboxData", "AWS::Logs::LogGroup.A")),
             [report(("CKV_AWS_192", "OutboxServices", "AWS::WAFv2::WebACL.WebAcl"))]],
        )
        self.assertEqual(new, [])
        self.assertEqual([e["check"] for e in unused], ["CKV_AWS_91"])

    def test_every_entry_needs_a_reason(self):
        with self.assertRaises(ValueError):
            gate([{"check": "CKV_AWS_1", "resources": ["*"], "reason": " "}], [])


if __name__ == "__main__":
    unittest.main()
