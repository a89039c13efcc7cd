//! The storage SCP (PS3.4 B.2) as a [`Service`]: each C-STORE-RQ's data set streams through
//! [`receive_to_file`] into the archive's incoming folder, and a [`StoreHandler`] (the archive,
//! in Python) decides where the file goes and what the response says.
use super::receive::{receive_to_file, Prepared, Received, StorageConfig};
use crate::link::{Link, Reply, Request};
use crate::services::Service;
use codec::Tag;
use std::any::Any;
use std::sync::Arc;
use ul::{AssocError, Command, NegotiatedContext};

/// The C-STORE being received, as the handler sees it.
pub struct StoreRequest<'r> {
    pub link: &'r Link,
    pub context: &'r NegotiatedContext,
    pub command: &'r Command,
}

/// What a handler's [`StoreHandler::prepare`] keeps for its [`StoreHandler::stored`].
pub type StoreState = Box<dyn Any + Send>;

/// Decides about received instances: implemented by the archive's binding.
pub trait StoreHandler: Send + Sync {
    /// Mid-stream, once every index key is final (the Pixel Data usually still arriving): where
    /// the file goes (see [`Prepared`]), and state handed back to `stored`.
    fn prepare(
        &self,
        _rq: &StoreRequest<'_>,
        _keys: &[(Tag, String)],
    ) -> (Prepared, Option<StoreState>) {
        (Prepared::Later, None)
    }
    /// The data set is on disk (or failed, `received.failure`): the reply. After an early
    /// reply (already sent) the returned one is not sent.
    fn stored(&self, rq: &StoreRequest<'_>, received: Received, state: Option<StoreState>)
        -> Reply;
    /// The instance is in place and its early reply went out: finish it (index it). The default
    /// calls [`StoreHandler::stored`] at once; a handler may defer it (nothing waits for it).
    fn answered(&self, rq: &StoreRequest<'_>, received: Received, state: Option<StoreState>) {
        self.stored(rq, received, state);
    }
    /// The association ended inside the data set (nothing was kept): release what `prepare`
    /// reserved.
    fn abandoned(&self, _rq: &StoreRequest<'_>, _state: Option<StoreState>) {}
}

/// True for the statuses after which the handler keeps the file (Success, Warning: PS3.4 B.2.3).
fn kept(status: u16) -> bool {
    status == 0x0000 || (0xB000..=0xBFFF).contains(&status)
}

/// The storage SCP service: the Rust data path plus a [`StoreHandler`].
pub struct StorageService {
    config: StorageConfig,
    handler: Arc<dyn StoreHandler>,
}

impl StorageService {
    pub fn new(config: StorageConfig, handler: Arc<dyn StoreHandler>) -> StorageService {
        StorageService { config, handler }
    }
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }
}

impl Service for StorageService {
    fn serve(&self, rq: &mut Request<'_, '_>) -> Result<(), AssocError> {
        let command = rq.command().clone();
        let context = rq.context().clone();
        let link = rq.link();
        let view = StoreRequest {
            link,
            context: &context,
            command: &command,
        };
        let calling_ae = link.negotiated().calling_ae.as_str();
        let mut state: Option<StoreState> = None;
        let received = receive_to_file(
            rq,
            &command,
            &context,
            calling_ae,
            &self.config,
            &mut |keys| {
                let (prepared, s) = self.handler.prepare(&view, keys);
                state = s;
                prepared
            },
        );
        let mut received = match received {
            Ok(r) => r,
            Err(e) => {
                self.handler.abandoned(&view, state);
                return Err(e);
            }
        };
        let size = received.received_bytes;
        let count = |rq: &Request<'_, '_>| {
            if let Some(m) = link.metrics() {
                m.stored(size, rq.started().elapsed());
            }
        };
        if let Some(early) = received.early.take() {
            // The file is in place and the handler answered early: respond now, then let it
            // finish (index) while the peer reads the response.
            let sent = rq.respond(&early);
            count(rq);
            self.handler.answered(&view, received, state);
            return sent;
        }
        let part = received.part_path.clone();
        let reply = self.handler.stored(&view, received, state);
        if !kept(reply.status) {
            // A failure: the handler did not take the file; nothing is left behind.
            if let Some(p) = part {
                let _ = std::fs::remove_file(p);
            }
        }
        let sent = rq.respond(&reply);
        count(rq);
        sent
    }
}
