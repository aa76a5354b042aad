//! SQS consumer loop (payment-service); see issue 4.
