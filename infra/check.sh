#!/usr/bin/env bash
# Every infra check, offline and without AWS credentials:
#   types (tsc), unit tests (jest + aws-cdk-lib/assertions), the demo scripts' tests,
#   `cdk synth` with cdk-nag AwsSolutions (fails on any unacknowledged finding),
#   cfn-lint on the synthesized templates, and the compose file's syntax.
#
#   bash infra/check.sh
#
# Installs what it needs on first run: node_modules via `npm ci` (again when package-lock.json
# changes) and cfn-lint into infra/.venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

export CDK_DISABLE_VERSION_CHECK=true CDK_DISABLE_CLI_TELEMETRY=true AWS_EC2_METADATA_DISABLED=true
CFN_LINT_VERSION=1.58.0

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

step "tsc --noEmit"
npx tsc --noEmit

step "jest"
# Two cores, shared with the Rust build: one worker.
npx jest --runInBand

step "demo scripts"
for script in scripts/*.sh ../docker/localstack/ready.d/*.sh; do bash -n "$script"; done
python3 -m unittest discover -s scripts -p 'test_*.py'

step "cdk synth (with cdk-nag AwsSolutions)"
rm -rf cdk.out
npx cdk synth --quiet

step "cfn-lint"
status=0
.venv/bin/cfn-lint cdk.out/*.template.json || status=$?
# 0: clean; 4: warnings only (here: CDK's redundant DependsOn). Anything else is an error.
if [ "$status" -ne 0 ] && [ "$status" -ne 4 ]; then
  echo "cfn-lint found errors (exit $status)" >&2
  exit "$status"
fi

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
