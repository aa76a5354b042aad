#!/bin/bash
# LocalStack runs this once SQS is up: the same queues the CDK messaging stack creates.
# create-queue is idempotent while the attributes are unchanged.
set -euo pipefail

# create_queue NAME DLQ: the FIFO queue NAME with its FIFO DLQ after 5 receives.
create_queue() {
  local dlq_url dlq_arn attributes
  dlq_url=$(awslocal sqs create-queue \
    --queue-name "$2" \
    --attributes FifoQueue=true,MessageRetentionPeriod=1209600 \
    --query QueueUrl --output text)
  dlq_arn=$(awslocal sqs get-queue-attributes \
    --queue-url "$dlq_url" --attribute-names QueueArn \
    --query Attributes.QueueArn --output text)
  # RedrivePolicy is a JSON document inside a string attribute.
  attributes=$(printf '{"FifoQueue":"true","ContentBasedDeduplication":"false","VisibilityTimeout":"60","RedrivePolicy":"{\\"deadLetterTargetArn\\":\\"%s\\",\\"maxReceiveCount\\":\\"5\\"}"}' "$dlq_arn")
  awslocal sqs create-queue --queue-name "$1" --attributes "$attributes" >/dev/null
  echo "queue ready: $1 -> $2 after 5 receives"
}

create_queue bookings.fifo bookings-dlq.fifo                # booking-service -> payment-service
create_queue payment-events.fifo payment-events-dlq.fifo    # payment-service -> booking-service (last: the healthcheck waits for it)
