//! Storage service class (PS3.4 Annex B) in Rust: the C-STORE data path that receives into the
//! archive's files ([`receive`]), the storage SCP service over it ([`service`]), and the sender
//! used by the SCU, C-MOVE and C-GET ([`send`]).
pub mod receive;
pub mod send;
pub mod service;

pub use receive::{receive_to_file, value_text, PartPool, Prepared, Received, StorageConfig};
pub use send::{
    choose_context, peek_file, read_head, store_data_set, store_file, Outgoing, Part10Head,
    SendError, StoreResponse,
};
pub use service::{StorageService, StoreHandler, StoreRequest, StoreState};
