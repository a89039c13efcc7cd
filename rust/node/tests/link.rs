//! Links shared by threads, end to end over loopback: a requestor whose peer sends requests back on the
//! same association while the requestor waits for its own response (C-GET's C-STOREs, a storage
//! commitment report), with a background thread serving the link at the same time.
use node::{FnService, Link, LinkLimits, Reply, Server, ServerConfig, Services};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use ul::dimse::{self, command_field, tag};
use ul::negotiate::{AcceptorConfig, ProposedContext, RequestorConfig, SupportedContext};
use ul::{AssocError, Association, Timeouts};

const VERIFICATION: &str = "1.2.840.10008.1.1";
const COMMITMENT: &str = "1.2.840.10008.1.20.1";
const ILE: &str = "1.2.840.10008.1.2";

/// A server whose C-ECHO service first sends `reports` N-EVENT-REPORT-RQs back on the same
/// association (waiting for each response), then answers the echo.
fn server(reports: usize) -> Server {
    let mut acceptor = AcceptorConfig::new("NODE");
    for a in [VERIFICATION, COMMITMENT] {
        acceptor.contexts.push(SupportedContext {
            abstract_syntax: a.into(),
            transfer_syntaxes: vec![ILE.into()],
            scp_role: true,
            scu_role: false,
        });
    }
    let mut services = Services::new();
    services.add(
        command_field::C_ECHO_RQ,
        None,
        Arc::new(FnService(move |rq: &mut node::Request<'_, '_>| {
            let link = rq.link();
            let ctx = link
                .negotiated()
                .find_context(COMMITMENT, None)
                .expect("commitment context")
                .id;
            for _ in 0..reports {
                let mut report = dimse::request(
                    command_field::N_EVENT_REPORT_RQ,
                    link.next_message_id(),
                    COMMITMENT,
                    false,
                );
                report.set_str(tag::AFFECTED_SOP_INSTANCE_UID, "1.2.840.10008.1.20.1.1");
                report.set_us(tag::EVENT_TYPE_ID, 1);
                let g = rq.guard();
                let id = link.send_request(g, ctx, &mut report, None)?;
                let rsp = link.await_response(g, id, Some(Duration::from_secs(10)))?;
                assert_eq!(rsp.command.status(), Some(0));
            }
            rq.respond(&Reply::status(0))
        })),
    );
    let config = ServerConfig {
        acceptor,
        timeouts: Timeouts::default(),
        max_associations: 8,
        limits: LinkLimits::default(),
    };
    let server = Server::bind(
        ("127.0.0.1", 0),
        config,
        Arc::new(services),
        Arc::new(node::NoHooks),
    )
    .unwrap();
    server.start().unwrap();
    server
}

/// A requestor link that answers N-EVENT-REPORTs (counting them).
fn requestor(port: u16, reports_seen: Arc<AtomicUsize>) -> Arc<Link> {
    let mut cfg = RequestorConfig::new("SCU", "NODE");
    for a in [VERIFICATION, COMMITMENT] {
        cfg.contexts.push(ProposedContext {
            abstract_syntax: a.into(),
            transfer_syntaxes: vec![ILE.into()],
            roles: None,
        });
    }
    let assoc = Association::request(("127.0.0.1", port), &cfg, Timeouts::default()).unwrap();
    let mut services = Services::new();
    services.add(
        command_field::N_EVENT_REPORT_RQ,
        None,
        Arc::new(FnService(move |rq: &mut node::Request<'_, '_>| {
            reports_seen.fetch_add(1, Ordering::SeqCst);
            rq.respond(&Reply::status(0))
        })),
    );
    Link::new(assoc, Arc::new(services), LinkLimits::default()).unwrap()
}

fn echo(link: &Link) -> Result<u16, AssocError> {
    let ctx = link
        .negotiated()
        .find_context(VERIFICATION, None)
        .unwrap()
        .id;
    let mut rq = dimse::request(
        command_field::C_ECHO_RQ,
        link.next_message_id(),
        VERIFICATION,
        false,
    );
    let m = link.request(ctx, &mut rq, None, Some(Duration::from_secs(10)))?;
    Ok(m.command.status().unwrap_or(0xFFFF))
}

#[test]
fn requests_of_the_peer_are_served_while_we_wait_with_or_without_a_serving_thread() {
    let server = server(3);
    let port = server.local_addr().port();
    for background in [false, true] {
        // Many rounds: the reply and the peer's requests race between the waiting thread and the
        // serving one; a response read by one must wake the other (no lost wake-up).
        let seen = Arc::new(AtomicUsize::new(0));
        let link = requestor(port, seen.clone());
        let serving = background.then(|| {
            let l = Arc::clone(&link);
            std::thread::spawn(move || l.serve(&AtomicBool::new(false), None))
        });
        for _ in 0..200 {
            assert_eq!(echo(&link).unwrap(), 0);
        }
        assert_eq!(seen.load(Ordering::SeqCst), 600);
        link.release().unwrap();
        if let Some(t) = serving {
            assert_eq!(t.join().unwrap(), node::Outcome::Released);
        }
    }
    server.shutdown();
}

#[test]
fn a_response_nobody_asked_for_aborts_the_association() {
    let server = server(0);
    let port = server.local_addr().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let link = requestor(port, seen);
    // A C-ECHO-RSP to a message the server never sent us... sent by us to the server.
    let ctx = link
        .negotiated()
        .find_context(VERIFICATION, None)
        .unwrap()
        .id;
    let mut rsp = dimse::response_to(
        &dimse::request(command_field::C_ECHO_RQ, 77, VERIFICATION, false),
        0,
        false,
    );
    rsp.set_us(tag::MESSAGE_ID_BEING_RESPONDED_TO, 77);
    {
        let mut g = link.lock();
        g.assoc.send_message(ctx, &rsp, None).unwrap();
    }
    // The server aborts: our next request fails at once instead of waiting for a timeout.
    let t0 = std::time::Instant::now();
    assert!(echo(&link).is_err());
    assert!(t0.elapsed() < Duration::from_secs(5));
    server.shutdown();
}
