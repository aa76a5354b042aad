//! The HTTP boundary's errors: the one enum both services share, with its one
//! mapping to problem+json (`service_kit::error`).

pub use service_kit::error::ApiError;
