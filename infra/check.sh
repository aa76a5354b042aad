#!/usr/bin/env bash
# Every infra check, offline and without AWS credentials:
#   types (tsc), unit tests (jest + aws-cdk-lib/assertions), the demo scripts' tests,
#   `cdk synth` with cdk-nag AwsSolutions (fails on any unacknowledged finding) of the default app
#   and of the variant with every option on, cfn-lint and checkov on both sets of templates
#   (checkov fails on any finding not in checkov-baseline.json), the Dockerfiles' base images,
#   and the compose file's syntax.
#
#   bash infra/check.sh
#
# Installs what it needs on first run: node_modules via `npm ci` (again when package-lock.json
# changes), cfn-lint into infra/.venv and checkov into .local/checkov-venv (both git-ignored;
# apart because checkov pins its own versions of shared dependencies).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

export CDK_DISABLE_VERSION_CHECK=true CDK_DISABLE_CLI_TELEMETRY=true AWS_EC2_METADATA_DISABLED=true
CFN_LINT_VERSION=1.58.0
CHECKOV_VERSION=3.3.30
CHECKOV_VENV=../.local/checkov-venv
# Every option on, for synth + cdk-nag + cfn-lint + checkov (the certificate is a made-up ARN).
OPTIONS_CONTEXT=(-c deletionProtection=true -c alarmEmail=ops@example.com -c waf=true
  -c certificateArn=arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0
  -c domainName=outbox.example.com)

step() { printf '\n== %s\n' "$*"; }
started=$SECONDS

step "npm ci (only when node_modules is missing or stale)"
stamp=node_modules/.check-package-lock.json
if [ ! -d node_modules ] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund
  cp package-lock.json "$stamp"
else
  echo "node_modules matches package-lock.json"
fi

step "cfn-lint $CFN_LINT_VERSION in infra/.venv"
if [ "$(.venv/bin/cfn-lint --version 2>/dev/null)" != "cfn-lint $CFN_LINT_VERSION" ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "cfn-lint==$CFN_LINT_VERSION"
fi
.venv/bin/cfn-lint --version

step "checkov $CHECKOV_VERSION in .local/checkov-venv"
if [ "$("$CHECKOV_VENV/bin/checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
  rm -rf "$CHECKOV_VENV"
  mkdir -p "$(dirname "$CHECKOV_VENV")"
  python3 -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi
echo "checkov $("$CHECKOV_VENV/bin/checkov" --version)"

step "tsc --noEmit"
npx tsc --noEmit

step "jest"
# Two cores, shared with the Rust build: one worker.
npx jest --runInBand

step "demo scripts"
for script in scripts/*.sh ../docker/localstack/ready.d/*.sh; do bash -n "$script"; done
python3 -m unittest discover -s scripts -p 'test_*.py'

step "cdk synth (with cdk-nag AwsSolutions): defaults, then every option on"
rm -rf cdk.out cdk.out.options
npx cdk synth --quiet
npx cdk synth --quiet --output cdk.out.options "${OPTIONS_CONTEXT[@]}"

step "cfn-lint"
status=0
.venv/bin/cfn-lint cdk.out/*.template.json cdk.out.options/*.template.json || status=$?
# 0: clean; 4: warnings only (here: CDK's redundant DependsOn). Anything else is an error.
if [ "$status" -ne 0 ] && [ "$status" -ne 4 ]; then
  echo "cfn-lint found errors (exit $status)" >&2
  exit "$status"
fi

step "checkov (new findings fail; accepted ones are in checkov-baseline.json with their reasons)"
reports=()
for dir in cdk.out cdk.out.options; do
  status=0
  # --skip-download: no calls to the vendor's API (offline, and nothing to send it).
  BC_SKIP_MAPPING=TRUE "$CHECKOV_VENV/bin/checkov" --framework cloudformation --skip-download --quiet --compact \
    -o json -f "$dir"/*.template.json > "$dir/checkov.json" || status=$?
  # 0: no findings; 1: findings (judged below). Anything else: checkov itself failed.
  if [ "$status" -gt 1 ]; then
    echo "checkov failed on $dir (exit $status)" >&2
    exit "$status"
  fi
  reports+=("$dir/checkov.json")
done
python3 scripts/checkov_gate.py checkov-baseline.json "${reports[@]}"

step "Dockerfiles: base images on Debian trixie, pinned by digest"
bad=$(grep -HnE '^FROM ' ../docker/*.Dockerfile | grep -vE '^[^:]+:[0-9]+:FROM [^ ]*trixie[^ ]*@sha256:[0-9a-f]{64}( AS [a-z]+)?$' || true)
if [ -n "$bad" ]; then
  printf 'base image not on trixie or not pinned by digest:\n%s\n' "$bad" >&2
  exit 1
fi
grep -hE '^FROM ' ../docker/*.Dockerfile | sort | uniq -c

step "docker/compose.yaml parses"
.venv/bin/python - <<'EOF'
import yaml
compose = yaml.safe_load(open("../docker/compose.yaml"))
expected = {"postgres", "localstack", "booking-service", "payment-service"}
missing = expected - set(compose["services"])
assert not missing, f"compose.yaml lacks services {missing}"
print("services:", ", ".join(compose["services"]))
EOF

printf '\ninfra checks passed in %ss\n' "$((SECONDS - started))"
