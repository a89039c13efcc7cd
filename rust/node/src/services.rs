//! Services on a link: registered by DIMSE command field and abstract syntax, called once per
//! request with a [`Request`] to answer it through (PS3.7 §9–10).
//!
//! [`Services`] is the [`Dispatch`] of the server's links (and of a requestor's): it checks
//! what PS3.7 requires of every request before any service sees it (a known operation, a data
//! set where one belongs and none where none does), answers C-ECHO itself when no service is
//! registered for it, and refuses what nobody serves.
use crate::link::{Dispatch, Level, Link, Reply, Request};
use std::sync::Arc;
use ul::dimse::command_field as cf;
use ul::AssocError;

/// One service: answers the requests routed to it.
pub trait Service: Send + Sync {
    /// Serves one request; the final response goes out through `rq` (see [`Request::respond`]).
    fn serve(&self, rq: &mut Request<'_, '_>) -> Result<(), AssocError>;
}

/// Receives the notices of the links a [`Services`] serves (log lines).
pub type Notices = Arc<dyn Fn(&Link, Level, &str) + Send + Sync>;

struct Route {
    field: u16,
    /// `None`: any abstract syntax.
    abstract_syntax: Option<String>,
    service: Arc<dyn Service>,
}

/// The services of an AE, looked up by (command field, abstract syntax).
#[derive(Default)]
pub struct Services {
    routes: Vec<Route>,
    notices: Option<Notices>,
}

/// Whether a request carries a data set (PS3.7 §9.3, §10.3): required, forbidden or optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataSet {
    Required,
    Forbidden,
    Optional,
}

/// The requests PS3.7 defines, with the data set each carries.
fn known_request(field: u16) -> Option<(&'static str, DataSet)> {
    Some(match field {
        cf::C_STORE_RQ => ("C-STORE-RQ", DataSet::Required),
        cf::C_FIND_RQ => ("C-FIND-RQ", DataSet::Required),
        cf::C_GET_RQ => ("C-GET-RQ", DataSet::Required),
        cf::C_MOVE_RQ => ("C-MOVE-RQ", DataSet::Required),
        cf::C_ECHO_RQ => ("C-ECHO-RQ", DataSet::Forbidden),
        cf::N_EVENT_REPORT_RQ => ("N-EVENT-REPORT-RQ", DataSet::Optional),
        cf::N_GET_RQ => ("N-GET-RQ", DataSet::Forbidden),
        cf::N_SET_RQ => ("N-SET-RQ", DataSet::Required),
        cf::N_ACTION_RQ => ("N-ACTION-RQ", DataSet::Optional),
        cf::N_CREATE_RQ => ("N-CREATE-RQ", DataSet::Optional),
        cf::N_DELETE_RQ => ("N-DELETE-RQ", DataSet::Forbidden),
        _ => return None,
    })
}

/// General DIMSE statuses (PS3.7 C.4, C.5).
mod status {
    pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
    pub const MISTYPED_ARGUMENT: u16 = 0x0212;
    /// C-STORE: Refused, out of resources (PS3.4 B.2.3).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
}

impl Services {
    pub fn new() -> Services {
        Services::default()
    }

    /// Routes requests with `field` on contexts of `abstract_syntax` (`None`: any) to `service`.
    /// A route for one abstract syntax wins over one for any; among equals, the first added.
    pub fn add(&mut self, field: u16, abstract_syntax: Option<&str>, service: Arc<dyn Service>) {
        self.routes.push(Route {
            field,
            abstract_syntax: abstract_syntax.map(str::to_string),
            service,
        });
    }

    /// Where the notices of the links go (else nowhere).
    pub fn set_notices(&mut self, notices: Notices) {
        self.notices = Some(notices);
    }

    /// The service for a request, if any.
    pub fn lookup(&self, field: u16, abstract_syntax: &str) -> Option<&Arc<dyn Service>> {
        let mut any = None;
        for r in self.routes.iter().filter(|r| r.field == field) {
            match &r.abstract_syntax {
                Some(a) if a == abstract_syntax => return Some(&r.service),
                Some(_) => {}
                None => {
                    any.get_or_insert(&r.service);
                }
            }
        }
        any
    }

    /// True if any service is registered (a requestor with none needs no thread serving it).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    fn refuse(
        &self,
        rq: &mut Request<'_, '_>,
        status: u16,
        why: &str,
        level: Level,
    ) -> Result<(), AssocError> {
        self.notice(
            rq.link(),
            level,
            &format!(
                "message {} refused with 0x{status:04X}: {why}",
                rq.message_id()
            ),
        );
        rq.skip_data_set()?;
        rq.respond(&Reply::with_comment(status, why))
    }
}

impl Dispatch for Services {
    fn dispatch(&self, rq: &mut Request<'_, '_>) -> Result<(), AssocError> {
        let field = rq.field();
        let Some((name, data_set)) = known_request(field) else {
            // PS3.7 C.4.1.1.3 (via C.5): an operation the DIMSE provider does not know.
            return self.refuse(
                rq,
                status::UNRECOGNIZED_OPERATION,
                &format!("unrecognized operation: command field 0x{field:04X}"),
                Level::Warning,
            );
        };
        match (data_set, rq.has_data_set()) {
            (DataSet::Required, false) => {
                return self.refuse(
                    rq,
                    status::MISTYPED_ARGUMENT,
                    &format!("{name} without a data set"),
                    Level::Warning,
                )
            }
            (DataSet::Forbidden, true) => {
                return self.refuse(
                    rq,
                    status::MISTYPED_ARGUMENT,
                    &format!("{name} with a data set, which it must not carry"),
                    Level::Warning,
                )
            }
            _ => {}
        }
        let abstract_syntax = rq.context().abstract_syntax.clone();
        if let Some(service) = self.lookup(field, &abstract_syntax) {
            let service = Arc::clone(service);
            let r = service.serve(rq);
            if let Err(e) = &r {
                self.notice(
                    rq.link(),
                    Level::Warning,
                    &format!("{name} (message {}) failed: {e}", rq.message_id()),
                );
            }
            return r;
        }
        match field {
            // Verification (PS3.4 Annex A): nothing to decide.
            cf::C_ECHO_RQ => rq.respond(&Reply::status(0x0000)),
            cf::C_STORE_RQ => self.refuse(
                rq,
                status::OUT_OF_RESOURCES,
                "this node does not store instances",
                Level::Warning,
            ),
            _ => self.refuse(
                rq,
                status::UNRECOGNIZED_OPERATION,
                &format!("no service for {name} on {abstract_syntax}"),
                Level::Warning,
            ),
        }
    }

    fn notice(&self, link: &Link, level: Level, message: &str) {
        if let Some(n) = &self.notices {
            n(link, level, message);
        }
    }
}

/// [`Service`] of a closure, for services with no state of their own.
pub struct FnService<F>(pub F);

impl<F> Service for FnService<F>
where
    F: Fn(&mut Request<'_, '_>) -> Result<(), AssocError> + Send + Sync,
{
    fn serve(&self, rq: &mut Request<'_, '_>) -> Result<(), AssocError> {
        (self.0)(rq)
    }
}
