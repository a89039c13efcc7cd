//! The node's Rust core: the SCP server loop and the streaming C-STORE data path.
//! Knows associations (ul) and data sets (codec); knows nothing of Python.
pub mod direct;
pub mod journal;
pub mod server;
pub mod storage;

pub use journal::{Journal, JournalStats};
pub use server::{FieldValue, Handler, Reply, Server, ServerConfig, Session};
pub use storage::{
    peek_file, read_head, receive_to_file, send_data_set, send_file, Outgoing, Part10Head,
    PartPool, Prepared, Received, SendError, StorageConfig, StoreResponse,
};
