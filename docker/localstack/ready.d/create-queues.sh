#!/bin/bash
# LocalStack runs this once SQS is up: the same queues the CDK messaging stack creates.
# create-queue is idempotent while the attributes are unchanged.
set -euo pipefail

dlq_url=$(awslocal sqs create-queue \
  --queue-name bookings-dlq.fifo \
  --attributes FifoQueue=true,MessageRetentionPeriod=1209600 \
  --query QueueUrl --output text)
dlq_arn=$(awslocal sqs get-queue-attributes \
  --queue-url "$dlq_url" --attribute-names QueueArn \
  --query Attributes.QueueArn --output text)

# RedrivePolicy is a JSON document inside a string attribute.
attributes=$(printf '{"FifoQueue":"true","ContentBasedDeduplication":"false","VisibilityTimeout":"60","RedrivePolicy":"{\\"deadLetterTargetArn\\":\\"%s\\",\\"maxReceiveCount\\":\\"5\\"}"}' "$dlq_arn")
awslocal sqs create-queue --queue-name bookings.fifo --attributes "$attributes" >/dev/null

echo "queues ready: bookings.fifo -> bookings-dlq.fifo after 5 receives"
