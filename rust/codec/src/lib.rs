//! Streaming element codec (PS3.5). Filled in by the transfer-syntax issue.
