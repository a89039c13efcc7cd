//! Association negotiation without I/O (PS3.8 §7.1, §9.3.2–9.3.4; PS3.7 Annex D.3).
//!
//! The acceptor answers an A-ASSOCIATE-RQ from its configuration; the requestor builds the
//! request and interprets the answer. Both produce the same [`Negotiated`] summary.
use crate::pdu::*;
use rustc_hash::FxHashMap;
use std::collections::HashMap;

/// Implementation Class UID of ferrodicom (a 2.25 UUID-derived UID, generated once; PS3.5 §B.2).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.3988075651491133059190005823922452769";
/// Implementation Version Name of ferrodicom (at most 16 characters, PS3.7 D.3.3.2.3).
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!(
    "FERRODICOM_",
    env!("CARGO_PKG_VERSION_MAJOR"),
    env!("CARGO_PKG_VERSION_MINOR"),
    env!("CARGO_PKG_VERSION_PATCH")
);
/// Default maximum PDU length we receive.
pub const DEFAULT_MAX_PDU: u32 = 262_144;
/// Smallest non-zero maximum PDU length an acceptor configuration may announce. PS3.8 sets no
/// minimum (Annex D.1 gives only 0 a meaning: no maximum), but the variable field of a
/// P-DATA-TF PDU holds one or more PDV items (§9.3.5), each with a 4-byte item length and a
/// 2-byte header: below 7 bytes not one byte of a message fits, and a peer honouring the limit
/// could never send anything. (DCMTK's own floor, ASC_MINIMUMPDUSIZE, is 4096.)
pub const MIN_MAX_PDU: u32 = 7;
/// Most presentation contexts one association can carry (odd IDs 1..=255, PS3.8 §9.3.2.2).
pub const MAX_PRESENTATION_CONTEXTS: usize = 128;

/// A-ASSOCIATE-RJ reasons used by the acceptor (PS3.8 §9.3.4, Table 9-21).
pub mod reject {
    use crate::pdu::AssociateRj;

    const fn rj(result: u8, source: u8, reason: u8) -> AssociateRj {
        AssociateRj::new(result, source, reason)
    }
    pub const NO_REASON: AssociateRj = rj(1, 1, 1);
    pub const APPLICATION_CONTEXT_NOT_SUPPORTED: AssociateRj = rj(1, 1, 2);
    pub const CALLING_AE_NOT_RECOGNIZED: AssociateRj = rj(1, 1, 3);
    pub const CALLED_AE_NOT_RECOGNIZED: AssociateRj = rj(1, 1, 7);
    pub const PROTOCOL_VERSION_NOT_SUPPORTED: AssociateRj = rj(1, 2, 2);
    pub const TEMPORARY_CONGESTION: AssociateRj = rj(2, 3, 1);
    pub const LOCAL_LIMIT_EXCEEDED: AssociateRj = rj(2, 3, 2);
}

/// Presentation context results (PS3.8 Table 9-18).
pub mod pc_result {
    pub const ACCEPTANCE: u8 = 0;
    pub const USER_REJECTION: u8 = 1;
    pub const NO_REASON: u8 = 2;
    pub const ABSTRACT_SYNTAX_NOT_SUPPORTED: u8 = 3;
    pub const TRANSFER_SYNTAXES_NOT_SUPPORTED: u8 = 4;
}

/// One abstract syntax this AE supports as acceptor, with the roles it may play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportedContext {
    pub abstract_syntax: String,
    /// Transfer syntaxes accepted; the proposer's order decides among them.
    pub transfer_syntaxes: Vec<String>,
    /// We may act as SCP for this class (the requestor as SCU): the default role.
    pub scp_role: bool,
    /// We may act as SCU for this class (the requestor as SCP, e.g. C-GET storage sub-operations).
    pub scu_role: bool,
}

/// Acceptor configuration: handed down once per server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptorConfig {
    pub ae_title: String,
    /// Reject with 1/1/7 when the called AE title is not ours.
    pub require_called_aet: bool,
    /// When set, only these calling AE titles are accepted (else 1/1/3).
    pub allowed_calling_aets: Option<Vec<String>>,
    pub contexts: Vec<SupportedContext>,
    pub max_pdu: u32,
    pub implementation_class_uid: String,
    pub implementation_version_name: Option<String>,
    /// Replies to SOP Class Extended Negotiation, by SOP class UID (PS3.7 D.3.3.5).
    pub extended_negotiation: HashMap<String, Vec<u8>>,
}

impl AcceptorConfig {
    /// A configuration with defaults and no supported context; it passes [`Self::validate`].
    pub fn new(ae_title: &str) -> Self {
        AcceptorConfig {
            ae_title: ae_title.to_string(),
            require_called_aet: false,
            allowed_calling_aets: None,
            contexts: Vec::new(),
            max_pdu: DEFAULT_MAX_PDU,
            implementation_class_uid: IMPLEMENTATION_CLASS_UID.to_string(),
            implementation_version_name: Some(IMPLEMENTATION_VERSION_NAME.to_string()),
            extended_negotiation: HashMap::new(),
        }
    }

    /// Checks every size and value this configuration puts into the reader or on the wire:
    ///
    /// - `max_pdu` is 0 (no maximum, PS3.8 Annex D.1) or at least [`MIN_MAX_PDU`]; the upper
    ///   bound is the type's (the PDU length field is 32 bits, §9.3.1);
    /// - the AE title is 1 to 16 characters of the AE repertoire;
    /// - the implementation class UID and every UID of `contexts` and `extended_negotiation` are
    ///   valid UIDs of at most 64 characters, and the implementation version name (if any) is 1
    ///   to 16 ISO 646 characters (PS3.7 D.3.3.2);
    /// - each SOP Class Extended Negotiation reply fits its sub-item, and the largest User
    ///   Information item an A-ASSOCIATE-AC can carry with this configuration fits the 16-bit
    ///   item length (PS3.8 §9.3.3.3): fixed sub-items, a role selection reply for up to
    ///   [`MAX_PRESENTATION_CONTEXTS`] abstract syntaxes, every extended negotiation reply and a
    ///   user identity reply.
    ///
    /// [`accept_or_reject`] rejects (1/1/1) rather than answer from an invalid configuration, and
    /// [`crate::Association::respond`] also returns this error; a server should call it once when
    /// it is configured.
    pub fn validate(&self) -> Result<(), String> {
        check_uid(&self.implementation_class_uid)
            .map_err(|e| format!("implementation class UID: {e}"))?;
        for c in &self.contexts {
            check_uid(&c.abstract_syntax).map_err(|e| format!("supported context: {e}"))?;
            for ts in &c.transfer_syntaxes {
                check_uid(ts)
                    .map_err(|e| format!("supported context {}: {e}", c.abstract_syntax))?;
            }
        }
        for uid in self.extended_negotiation.keys() {
            check_uid(uid).map_err(|e| format!("extended negotiation: {e}"))?;
        }
        self.validate_sizes()
    }

    /// The part of [`AcceptorConfig::validate`] that keeps the wire correct (AE title, maximum PDU
    /// length, the A-ASSOCIATE-AC's user information length), without checking every UID: cheap
    /// enough for every association ([`accept_or_reject`] runs it).
    pub fn validate_sizes(&self) -> Result<(), String> {
        AeTitle::new(&self.ae_title)?;
        if self.max_pdu != 0 && self.max_pdu < MIN_MAX_PDU {
            return Err(format!(
                "maximum PDU length {} is below the minimum of {MIN_MAX_PDU} bytes (0 means no maximum)",
                self.max_pdu
            ));
        }
        if self.implementation_class_uid.len() > 64 {
            return Err("implementation class UID is longer than 64 characters".into());
        }
        let mut total = 4 + 4 + 4 + self.implementation_class_uid.len();
        if let Some(v) = &self.implementation_version_name {
            if v.is_empty() || v.len() > 16 || !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(format!(
                    "implementation version name {v:?} must be 1 to 16 ISO 646 characters"
                ));
            }
            total += 4 + v.len();
        }
        for (uid, info) in &self.extended_negotiation {
            if uid.len() > 64 {
                return Err(format!(
                    "extended negotiation: UID {uid} is longer than 64 characters"
                ));
            }
            let len = 2 + uid.len() + info.len();
            if len > u16::MAX as usize {
                return Err(format!(
                    "extended negotiation reply for {uid} is {} bytes; at most {} fit one sub-item",
                    info.len(),
                    u16::MAX as usize - 2 - uid.len()
                ));
            }
            total += 4 + len;
        }
        // User identity reply (no server response).
        total += 4 + 2;
        // Role selection replies: one per abstract syntax, for at most 128 accepted contexts.
        // Every context counted once is a bound that nearly always fits already (this runs for
        // every association); only when it does not are duplicates and the 128 cap taken out.
        let all_roles: usize = self
            .contexts
            .iter()
            .map(|c| 4 + 4 + c.abstract_syntax.len())
            .sum();
        total += if total + all_roles <= u16::MAX as usize {
            all_roles
        } else {
            let mut abstract_lens = Vec::with_capacity(self.contexts.len());
            let mut seen = std::collections::HashSet::new();
            for c in &self.contexts {
                if seen.insert(c.abstract_syntax.as_str()) {
                    abstract_lens.push(c.abstract_syntax.len());
                }
            }
            abstract_lens.sort_unstable_by(|a, b| b.cmp(a));
            abstract_lens
                .iter()
                .take(MAX_PRESENTATION_CONTEXTS)
                .map(|len| 4 + 4 + len)
                .sum::<usize>()
        };
        if total > u16::MAX as usize {
            return Err(format!(
                "an A-ASSOCIATE-AC could need a user information item of {total} bytes \
                 (at most 65535): shorten the extended negotiation replies"
            ));
        }
        Ok(())
    }
}

/// A presentation context as negotiated, from the local point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedContext {
    pub id: u8,
    pub abstract_syntax: String,
    /// The accepted transfer syntax (empty when rejected).
    pub transfer_syntax: String,
    pub result: u8,
    /// This side may act as SCU (send requests) on this context.
    pub local_scu: bool,
    /// This side may act as SCP (answer requests) on this context.
    pub local_scp: bool,
}

impl NegotiatedContext {
    pub fn accepted(&self) -> bool {
        self.result == pc_result::ACCEPTANCE
    }
}

/// The outcome of negotiation: what both sides agreed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Negotiated {
    pub calling_ae: String,
    pub called_ae: String,
    pub contexts: Vec<NegotiatedContext>,
    /// Largest PDU the peer accepts (0 = unlimited); we fragment to this.
    pub peer_max_pdu: u32,
    /// Largest PDU we accept; longer P-DATA-TF PDUs are refused.
    pub local_max_pdu: u32,
    pub peer_implementation_class_uid: String,
    pub peer_implementation_version_name: Option<String>,
    /// The requestor's user identity item, if any (type, primary, secondary).
    pub user_identity: Option<(u8, Vec<u8>, Vec<u8>)>,
    /// SOP Class Extended Negotiation items agreed (acceptor's replies).
    pub extended_negotiation: Vec<(String, Vec<u8>)>,
    /// SOP Class Common Extended Negotiation items the requestor sent.
    pub common_extended: Vec<(String, String, Vec<String>)>,
}

impl Negotiated {
    pub fn context(&self, id: u8) -> Option<&NegotiatedContext> {
        self.contexts.iter().find(|c| c.id == id)
    }
    /// The first accepted context for an abstract syntax, preferring `transfer_syntax` if given.
    pub fn find_context(
        &self,
        abstract_syntax: &str,
        transfer_syntax: Option<&str>,
    ) -> Option<&NegotiatedContext> {
        let mut it = self
            .contexts
            .iter()
            .filter(|c| c.accepted() && c.abstract_syntax == abstract_syntax);
        match transfer_syntax {
            Some(ts) => self
                .contexts
                .iter()
                .find(|c| {
                    c.accepted() && c.abstract_syntax == abstract_syntax && c.transfer_syntax == ts
                })
                .or_else(|| it.next()),
            None => it.next(),
        }
    }
}

/// The acceptor's answer to an A-ASSOCIATE-RQ: accept with this AC and summary, or reject.
///
/// A request without presentation contexts is rejected (1/1/1). A request whose contexts are
/// all rejected is accepted with every context's result (the requestor decides what to do).
/// A configuration that fails [`AcceptorConfig::validate_sizes`] rejects every request (1/1/1).
pub fn accept_or_reject(
    cfg: &AcceptorConfig,
    rq: &AssociateRq,
) -> Result<(AssociateAc, Negotiated), AssociateRj> {
    if cfg.validate_sizes().is_err() {
        return Err(reject::NO_REASON);
    }
    answer(cfg, rq)
}

/// What the acceptor's application decided for one association, beyond its fixed configuration
/// (asked once per association, before the answer is built).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Server Response of the User Identity Negotiation reply (PS3.7 D.3.3.7.2), sent when the
    /// requestor asked for a positive response; `None` sends an empty one.
    pub identity_response: Option<Vec<u8>>,
    /// SOP Class Extended Negotiation replies for this association, by SOP class UID (PS3.7
    /// D.3.3.5); they take precedence over [`AcceptorConfig::extended_negotiation`] and are
    /// sent only for classes the requestor named.
    pub extended: HashMap<String, Vec<u8>>,
}

/// Largest reply a [`Decision`] may add (SOP class extended negotiation, identity response):
/// replies decided per association must not push the A-ASSOCIATE-AC's User Information item
/// past its 16-bit length (PS3.8 §9.3.3.3), which [`AcceptorConfig::validate_sizes`] checked
/// for the configuration alone. Longer ones are not sent.
pub const MAX_DECIDED_REPLY: usize = 1024;
/// Most extended negotiation replies a [`Decision`] may add.
pub const MAX_DECIDED_EXTENDED: usize = 16;

/// [`accept_or_reject`] for a configuration the caller has just checked with
/// [`AcceptorConfig::validate_sizes`] (so it is not checked twice per association).
pub(crate) fn answer(
    cfg: &AcceptorConfig,
    rq: &AssociateRq,
) -> Result<(AssociateAc, Negotiated), AssociateRj> {
    answer_with(cfg, rq, &Decision::default())
}

/// [`answer`] with the application's [`Decision`] for this association.
pub(crate) fn answer_with(
    cfg: &AcceptorConfig,
    rq: &AssociateRq,
    decision: &Decision,
) -> Result<(AssociateAc, Negotiated), AssociateRj> {
    if rq.protocol_version & 0x0001 == 0 {
        return Err(reject::PROTOCOL_VERSION_NOT_SUPPORTED);
    }
    if trim_uid(&rq.application_context) != DICOM_APPLICATION_CONTEXT {
        return Err(reject::APPLICATION_CONTEXT_NOT_SUPPORTED);
    }
    // PS3.8 §9.3.2: the request carries one or more Presentation Context Items, and the
    // A-ASSOCIATE-AC must too (§9.3.3). Without any there is nothing to accept: 1/1/1.
    if rq.presentation_contexts.is_empty() {
        return Err(reject::NO_REASON);
    }
    let called = rq.called_ae.trimmed();
    if cfg.require_called_aet && called != cfg.ae_title.trim() {
        return Err(reject::CALLED_AE_NOT_RECOGNIZED);
    }
    let calling = rq.calling_ae.trimmed();
    if let Some(allowed) = &cfg.allowed_calling_aets {
        if !allowed.iter().any(|a| a.trim() == calling) {
            return Err(reject::CALLING_AE_NOT_RECOGNIZED);
        }
    }
    let ui = rq.user_info.clone().unwrap_or_default();
    // Role selection proposals by SOP class (PS3.7 D.3.3.4).
    let roles: HashMap<&str, (u8, u8)> = ui
        .items
        .iter()
        .filter_map(|i| match i {
            UserItem::RoleSelection {
                sop_class_uid,
                scu_role,
                scp_role,
            } => Some((trim_uid(sop_class_uid), (*scu_role, *scp_role))),
            _ => None,
        })
        .collect();
    // FxHash: SipHash over ~150 storage SOP classes was a fifth of an association's CPU; the keys
    // come from our own configuration, so a peer cannot choose colliding ones.
    let supported: FxHashMap<&str, &SupportedContext> = cfg
        .contexts
        .iter()
        .map(|c| (c.abstract_syntax.as_str(), c))
        .collect();

    let mut negotiated = Vec::with_capacity(rq.presentation_contexts.len());
    let mut ac_pcs = Vec::with_capacity(rq.presentation_contexts.len());
    let mut role_replies: Vec<UserItem> = Vec::new();
    let mut seen_ids = std::collections::HashSet::new();
    for pc in &rq.presentation_contexts {
        let abs = trim_uid(&pc.abstract_syntax);
        let mut result = pc_result::ACCEPTANCE;
        let mut ts_chosen = String::new();
        let (mut local_scu, mut local_scp) = (false, false);
        if pc.id % 2 == 0 || !seen_ids.insert(pc.id) {
            result = pc_result::NO_REASON;
        } else if let Some(sup) = supported.get(abs) {
            match pc
                .transfer_syntaxes
                .iter()
                .find(|ts| sup.transfer_syntaxes.iter().any(|s| s == trim_uid(ts)))
            {
                None => result = pc_result::TRANSFER_SYNTAXES_NOT_SUPPORTED,
                Some(ts) => {
                    ts_chosen = trim_uid(ts).to_string();
                    match roles.get(abs) {
                        Some(&(prop_scu, prop_scp)) => {
                            // Accept the requestor as SCU if it offered and we may be SCP; as SCP if
                            // it offered and we may be SCU.
                            let acc_scu = prop_scu != 0 && sup.scp_role;
                            let acc_scp = prop_scp != 0 && sup.scu_role;
                            local_scp = acc_scu;
                            local_scu = acc_scp;
                            if !(acc_scu || acc_scp) {
                                result = pc_result::USER_REJECTION;
                            } else if !role_replies.iter().any(|r| matches!(r, UserItem::RoleSelection { sop_class_uid, .. } if sop_class_uid == abs)) {
                                role_replies.push(UserItem::RoleSelection {
                                    sop_class_uid: abs.to_string(),
                                    scu_role: acc_scu as u8,
                                    scp_role: acc_scp as u8,
                                });
                            }
                        }
                        None => {
                            // Default roles: requestor SCU, acceptor SCP.
                            if sup.scp_role {
                                local_scp = true;
                            } else {
                                result = pc_result::USER_REJECTION;
                            }
                        }
                    }
                }
            }
        } else {
            result = pc_result::ABSTRACT_SYNTAX_NOT_SUPPORTED;
        }
        if result != pc_result::ACCEPTANCE {
            ts_chosen.clear();
            local_scu = false;
            local_scp = false;
        }
        ac_pcs.push(PresentationContextAc {
            id: pc.id,
            result,
            // The transfer syntax sub-item is always sent; when rejected it is not significant,
            // and we echo the first one proposed (as DCMTK does).
            transfer_syntax: Some(if result == pc_result::ACCEPTANCE {
                ts_chosen.clone()
            } else {
                pc.transfer_syntaxes
                    .first()
                    .map(|t| trim_uid(t))
                    .unwrap_or("")
                    .to_string()
            }),
            ..Default::default()
        });
        negotiated.push(NegotiatedContext {
            id: pc.id,
            abstract_syntax: abs.to_string(),
            transfer_syntax: ts_chosen,
            result,
            local_scu,
            local_scp,
        });
    }

    let mut items = vec![
        UserItem::MaximumLength(cfg.max_pdu),
        UserItem::ImplementationClassUid(cfg.implementation_class_uid.clone()),
    ];
    items.extend(role_replies);
    if let Some(v) = &cfg.implementation_version_name {
        items.push(UserItem::ImplementationVersionName(v.clone()));
    }
    let mut extended = Vec::new();
    let mut common_extended = Vec::new();
    let mut user_identity = None;
    let mut identity_reply = false;
    let mut decided_count = 0usize;
    for item in &ui.items {
        match item {
            UserItem::SopClassExtended { sop_class_uid, .. } => {
                // One reply per SOP class (PS3.7 D.3.3.5.2), naming it as we know it (unpadded),
                // however often and however padded the request names it: the replies must fit
                // the 16-bit length of the User Information item.
                let uid = trim_uid(sop_class_uid);
                let decided = decision
                    .extended
                    .get_key_value(uid)
                    .filter(|(_, r)| r.len() <= MAX_DECIDED_REPLY)
                    .filter(|_| decided_count < MAX_DECIDED_EXTENDED);
                if let Some((known, reply)) =
                    decided.or_else(|| cfg.extended_negotiation.get_key_value(uid))
                {
                    decided_count += usize::from(decision.extended.contains_key(uid));
                    if !extended.iter().any(|(u, _)| u == known) {
                        items.push(UserItem::SopClassExtended {
                            sop_class_uid: known.clone(),
                            info: reply.clone(),
                        });
                        extended.push((known.clone(), reply.clone()));
                    }
                }
            }
            UserItem::SopClassCommonExtended {
                sop_class_uid,
                service_class_uid,
                related_general_sop_classes,
                ..
            } => {
                common_extended.push((
                    trim_uid(sop_class_uid).to_string(),
                    trim_uid(service_class_uid).to_string(),
                    related_general_sop_classes
                        .iter()
                        .map(|s| trim_uid(s).to_string())
                        .collect(),
                ));
            }
            UserItem::UserIdentityRq {
                identity_type,
                positive_response_requested,
                primary,
                secondary,
            } => {
                // The last identity item counts; it alone decides on the reply.
                user_identity = Some((*identity_type, primary.clone(), secondary.clone()));
                identity_reply = *positive_response_requested == 1;
            }
            _ => {}
        }
    }
    if identity_reply {
        // Username (1) and username+passcode (2) carry no server response (PS3.7 D.3.3.7.2).
        items.push(UserItem::UserIdentityAc {
            server_response: decision
                .identity_response
                .clone()
                .filter(|r| r.len() <= MAX_DECIDED_REPLY)
                .unwrap_or_default(),
        });
    }
    let ac = AssociateAc {
        protocol_version: PROTOCOL_VERSION,
        called_ae: rq.called_ae,
        calling_ae: rq.calling_ae,
        application_context: DICOM_APPLICATION_CONTEXT.to_string(),
        presentation_contexts: ac_pcs,
        user_info: Some(UserInformation::new(items)),
        // PS3.8 Table 9-17: bytes 43-74 carry the request's values, like the AE title fields.
        reserved: AssociateReserved {
            after_ae_titles: rq.reserved.after_ae_titles,
            ..Default::default()
        },
        ..Default::default()
    };
    let summary = Negotiated {
        calling_ae: calling,
        called_ae: called,
        contexts: negotiated,
        peer_max_pdu: ui.max_length().unwrap_or(0),
        local_max_pdu: cfg.max_pdu,
        peer_implementation_class_uid: ui
            .implementation_class_uid()
            .map(|s| trim_uid(s).to_string())
            .unwrap_or_default(),
        peer_implementation_version_name: ui
            .implementation_version_name()
            .map(|s| s.trim_end().to_string()),
        user_identity,
        extended_negotiation: extended,
        common_extended,
    };
    Ok((ac, summary))
}

/// A presentation context the requestor proposes, with the roles it wants to play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedContext {
    pub abstract_syntax: String,
    pub transfer_syntaxes: Vec<String>,
    /// Propose SCP/SCU role selection for this abstract syntax: (we as SCU, we as SCP).
    /// `None` uses the default roles (requestor is SCU) and sends no role item.
    pub roles: Option<(bool, bool)>,
}

/// Requestor configuration for one association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestorConfig {
    pub calling_ae: String,
    pub called_ae: String,
    pub contexts: Vec<ProposedContext>,
    pub max_pdu: u32,
    pub implementation_class_uid: String,
    pub implementation_version_name: Option<String>,
    /// User identity (type, positive response requested, primary, secondary).
    pub user_identity: Option<(u8, bool, Vec<u8>, Vec<u8>)>,
    /// SOP Class Extended Negotiation items to send.
    pub extended_negotiation: Vec<(String, Vec<u8>)>,
    /// SOP Class Common Extended Negotiation items (SOP class, service class, related classes).
    pub common_extended: Vec<(String, String, Vec<String>)>,
    /// Asynchronous operations window (invoked, performed) to propose.
    pub async_window: Option<(u16, u16)>,
}

impl RequestorConfig {
    pub fn new(calling_ae: &str, called_ae: &str) -> Self {
        RequestorConfig {
            calling_ae: calling_ae.to_string(),
            called_ae: called_ae.to_string(),
            contexts: Vec::new(),
            max_pdu: DEFAULT_MAX_PDU,
            implementation_class_uid: IMPLEMENTATION_CLASS_UID.to_string(),
            implementation_version_name: Some(IMPLEMENTATION_VERSION_NAME.to_string()),
            user_identity: None,
            extended_negotiation: Vec::new(),
            common_extended: Vec::new(),
            async_window: None,
        }
    }

    /// Builds the A-ASSOCIATE-RQ: contexts get IDs 1, 3, 5, ... in order.
    pub fn build_request(&self) -> Result<AssociateRq, String> {
        if self.contexts.is_empty() {
            return Err("no presentation contexts to propose".into());
        }
        if self.contexts.len() > MAX_PRESENTATION_CONTEXTS {
            return Err(format!(
                "{} presentation contexts proposed; at most {MAX_PRESENTATION_CONTEXTS} fit in one association",
                self.contexts.len()
            ));
        }
        let called_ae = AeTitle::new(&self.called_ae)?;
        let calling_ae = AeTitle::new(&self.calling_ae)?;
        let mut pcs = Vec::with_capacity(self.contexts.len());
        for (i, c) in self.contexts.iter().enumerate() {
            check_uid(&c.abstract_syntax)?;
            if c.transfer_syntaxes.is_empty() {
                return Err(format!(
                    "context for {} has no transfer syntax",
                    c.abstract_syntax
                ));
            }
            for ts in &c.transfer_syntaxes {
                check_uid(ts)?;
            }
            let len = 8
                + c.abstract_syntax.len()
                + c.transfer_syntaxes
                    .iter()
                    .map(|t| 4 + t.len())
                    .sum::<usize>();
            if len > u16::MAX as usize {
                return Err(format!(
                    "presentation context for {} does not fit one item ({len} bytes)",
                    c.abstract_syntax
                ));
            }
            pcs.push(PresentationContextRq {
                id: (2 * i + 1) as u8,
                abstract_syntax: c.abstract_syntax.clone(),
                transfer_syntaxes: c.transfer_syntaxes.clone(),
                ..Default::default()
            });
        }
        let mut items = vec![
            UserItem::MaximumLength(self.max_pdu),
            UserItem::ImplementationClassUid(self.implementation_class_uid.clone()),
        ];
        if let Some((invoked, performed)) = self.async_window {
            items.push(UserItem::AsyncOperationsWindow { invoked, performed });
        }
        let mut role_seen = std::collections::HashSet::new();
        for c in &self.contexts {
            if let Some((scu, scp)) = c.roles {
                if role_seen.insert(c.abstract_syntax.clone()) {
                    items.push(UserItem::RoleSelection {
                        sop_class_uid: c.abstract_syntax.clone(),
                        scu_role: scu as u8,
                        scp_role: scp as u8,
                    });
                }
            }
        }
        if let Some(v) = &self.implementation_version_name {
            if v.is_empty() || v.len() > 16 {
                return Err(format!(
                    "implementation version name {v:?} must be 1 to 16 characters"
                ));
            }
            items.push(UserItem::ImplementationVersionName(v.clone()));
        }
        for (uid, info) in &self.extended_negotiation {
            items.push(UserItem::SopClassExtended {
                sop_class_uid: uid.clone(),
                info: info.clone(),
            });
        }
        for (sop, service, related) in &self.common_extended {
            items.push(UserItem::SopClassCommonExtended {
                version: 0,
                sop_class_uid: sop.clone(),
                service_class_uid: service.clone(),
                related_general_sop_classes: related.clone(),
            });
        }
        if let Some((ty, positive, primary, secondary)) = &self.user_identity {
            items.push(UserItem::UserIdentityRq {
                identity_type: *ty,
                positive_response_requested: *positive as u8,
                primary: primary.clone(),
                secondary: secondary.clone(),
            });
        }
        check_uid(&self.implementation_class_uid)?;
        for (uid, _) in &self.extended_negotiation {
            check_uid(uid)?;
        }
        for (sop, service, related) in &self.common_extended {
            check_uid(sop)?;
            check_uid(service)?;
            for r in related {
                check_uid(r)?;
            }
        }
        // Every sub-item and the User Information item carry 16-bit lengths (PS3.8 §9.3.2.3).
        let mut total = 0usize;
        for item in &items {
            let len = user_item_value_len(item);
            if len > u16::MAX as usize {
                return Err(format!(
                    "user information sub-item of {len} bytes does not fit (at most 65535)"
                ));
            }
            total += 4 + len;
        }
        if total > u16::MAX as usize {
            return Err(format!(
                "user information of {total} bytes does not fit one item (at most 65535)"
            ));
        }
        Ok(AssociateRq {
            protocol_version: PROTOCOL_VERSION,
            called_ae,
            calling_ae,
            application_context: DICOM_APPLICATION_CONTEXT.to_string(),
            presentation_contexts: pcs,
            user_info: Some(UserInformation::new(items)),
            ..Default::default()
        })
    }

    /// Interprets the acceptor's A-ASSOCIATE-AC against the request we sent.
    pub fn interpret(&self, rq: &AssociateRq, ac: &AssociateAc) -> Result<Negotiated, String> {
        let ui = ac.user_info.clone().unwrap_or_default();
        let role_replies: HashMap<&str, (u8, u8)> = ui
            .items
            .iter()
            .filter_map(|i| match i {
                UserItem::RoleSelection {
                    sop_class_uid,
                    scu_role,
                    scp_role,
                } => Some((trim_uid(sop_class_uid), (*scu_role, *scp_role))),
                _ => None,
            })
            .collect();
        let mut contexts = Vec::with_capacity(ac.presentation_contexts.len());
        for pc in &ac.presentation_contexts {
            let idx = (pc.id as usize).wrapping_sub(1) / 2;
            let (prop, conf) = match (
                rq.presentation_contexts.iter().find(|p| p.id == pc.id),
                self.contexts.get(idx),
            ) {
                (Some(p), Some(c)) => (p, c),
                _ => {
                    return Err(format!(
                        "acceptor answered presentation context {} that was not proposed",
                        pc.id
                    ))
                }
            };
            let accepted = pc.result == pc_result::ACCEPTANCE;
            let ts = pc
                .transfer_syntax
                .as_deref()
                .map(trim_uid)
                .unwrap_or("")
                .to_string();
            if accepted && !prop.transfer_syntaxes.iter().any(|t| trim_uid(t) == ts) {
                return Err(format!(
                    "acceptor chose transfer syntax {ts:?} for context {} that was not proposed",
                    pc.id
                ));
            }
            let (local_scu, local_scp) = if !accepted {
                (false, false)
            } else {
                match (
                    conf.roles,
                    role_replies.get(trim_uid(&prop.abstract_syntax)),
                ) {
                    // Replies say whether the acceptor accepts *us* as SCU / SCP.
                    (Some((want_scu, want_scp)), Some(&(scu, scp))) => {
                        (want_scu && scu != 0, want_scp && scp != 0)
                    }
                    // No reply to a role proposal: default roles apply (PS3.7 D.3.3.4).
                    _ => (true, false),
                }
            };
            contexts.push(NegotiatedContext {
                id: pc.id,
                abstract_syntax: trim_uid(&prop.abstract_syntax).to_string(),
                transfer_syntax: if accepted { ts } else { String::new() },
                result: pc.result,
                local_scu,
                local_scp,
            });
        }
        let extended = ui
            .items
            .iter()
            .filter_map(|i| match i {
                UserItem::SopClassExtended {
                    sop_class_uid,
                    info,
                } => Some((trim_uid(sop_class_uid).to_string(), info.clone())),
                _ => None,
            })
            .collect();
        Ok(Negotiated {
            calling_ae: self.calling_ae.trim().to_string(),
            called_ae: self.called_ae.trim().to_string(),
            contexts,
            peer_max_pdu: ui.max_length().unwrap_or(0),
            local_max_pdu: self.max_pdu,
            peer_implementation_class_uid: ui
                .implementation_class_uid()
                .map(|s| trim_uid(s).to_string())
                .unwrap_or_default(),
            peer_implementation_version_name: ui
                .implementation_version_name()
                .map(|s| s.trim_end().to_string()),
            user_identity: None,
            extended_negotiation: extended,
            common_extended: Vec::new(),
        })
    }
}

/// Length of a User Information sub-item's value as encoded (PS3.7 Annex D.3.3).
fn user_item_value_len(item: &UserItem) -> usize {
    match item {
        UserItem::MaximumLength(_) | UserItem::AsyncOperationsWindow { .. } => 4,
        UserItem::ImplementationClassUid(s) | UserItem::ImplementationVersionName(s) => s.len(),
        UserItem::RoleSelection { sop_class_uid, .. } => 4 + sop_class_uid.len(),
        UserItem::SopClassExtended {
            sop_class_uid,
            info,
        } => 2 + sop_class_uid.len() + info.len(),
        UserItem::SopClassCommonExtended {
            sop_class_uid,
            service_class_uid,
            related_general_sop_classes,
            ..
        } => {
            6 + sop_class_uid.len()
                + service_class_uid.len()
                + related_general_sop_classes
                    .iter()
                    .map(|r| 2 + r.len())
                    .sum::<usize>()
        }
        UserItem::UserIdentityRq {
            primary, secondary, ..
        } => 6 + primary.len() + secondary.len(),
        UserItem::UserIdentityAc { server_response } => 2 + server_response.len(),
        UserItem::Unknown { data, .. } => data.len(),
    }
}

/// Checks a UID we are about to send (PS3.5 §9.1): 1–64 characters, digits and dots.
pub fn check_uid(uid: &str) -> Result<(), String> {
    if uid.is_empty() || uid.len() > 64 {
        return Err(format!("UID {uid:?} must be 1 to 64 characters"));
    }
    if !uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || uid.starts_with('.')
        || uid.ends_with('.')
        || uid.contains("..")
    {
        return Err(format!("UID {uid:?} is not a valid DICOM UID"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Negotiation as pure functions (PS3.8 §7.1.1, §9.3.2–9.3.4; PS3.7 Annex D.3.3).
    use super::*;

    const VERIFICATION: &str = "1.2.840.10008.1.1";
    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    const NM: &str = "1.2.840.10008.5.1.4.1.1.20";
    const FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
    const IMPLICIT: &str = "1.2.840.10008.1.2";
    const EXPLICIT: &str = "1.2.840.10008.1.2.1";
    const BIG: &str = "1.2.840.10008.1.2.2";
    const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

    fn supported(abs: &str, ts: &[&str], scp: bool, scu: bool) -> SupportedContext {
        SupportedContext {
            abstract_syntax: abs.into(),
            transfer_syntaxes: ts.iter().map(|s| s.to_string()).collect(),
            scp_role: scp,
            scu_role: scu,
        }
    }

    fn acceptor() -> AcceptorConfig {
        let mut cfg = AcceptorConfig::new("STORESCP");
        cfg.contexts = vec![
            supported(VERIFICATION, &[IMPLICIT], true, false),
            supported(CT, &[IMPLICIT, EXPLICIT], true, false),
            supported(NM, &[EXPLICIT, IMPLICIT], true, true),
        ];
        cfg
    }

    fn proposed(abs: &str, ts: &[&str], roles: Option<(bool, bool)>) -> ProposedContext {
        ProposedContext {
            abstract_syntax: abs.into(),
            transfer_syntaxes: ts.iter().map(|s| s.to_string()).collect(),
            roles,
        }
    }

    fn requestor(contexts: Vec<ProposedContext>) -> RequestorConfig {
        let mut cfg = RequestorConfig::new("XELERIS", "STORESCP");
        cfg.contexts = contexts;
        cfg
    }

    fn results(ac: &AssociateAc) -> Vec<(u8, u8, Option<&str>)> {
        ac.presentation_contexts
            .iter()
            .map(|p| (p.id, p.result, p.transfer_syntax.as_deref()))
            .collect()
    }

    fn role_items(ac: &AssociateAc) -> Vec<(String, u8, u8)> {
        ac.user_info
            .as_ref()
            .unwrap()
            .items
            .iter()
            .filter_map(|i| match i {
                UserItem::RoleSelection {
                    sop_class_uid,
                    scu_role,
                    scp_role,
                } => Some((sop_class_uid.clone(), *scu_role, *scp_role)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn first_proposed_transfer_syntax_the_ae_supports_wins() {
        let rq = requestor(vec![
            // AE supports IMPLICIT then EXPLICIT; the proposer's order decides.
            proposed(CT, &[BIG, EXPLICIT, IMPLICIT], None),
            proposed(CT, &[IMPLICIT, EXPLICIT], None),
            proposed(VERIFICATION, &[DEFLATED, IMPLICIT], None),
        ])
        .build_request()
        .unwrap();
        // Padded UIDs (trailing NUL) from sloppy peers still match.
        let mut rq = rq;
        rq.presentation_contexts[2].transfer_syntaxes[1].push('\0');
        let (ac, n) = accept_or_reject(&acceptor(), &rq).unwrap();
        assert_eq!(
            results(&ac),
            vec![
                (1, 0, Some(EXPLICIT)),
                (3, 0, Some(IMPLICIT)),
                (5, 0, Some(IMPLICIT))
            ]
        );
        assert_eq!(n.contexts[0].transfer_syntax, EXPLICIT);
        assert!(n
            .contexts
            .iter()
            .all(|c| c.accepted() && c.local_scp && !c.local_scu));
        assert_eq!(n.find_context(CT, Some(IMPLICIT)).unwrap().id, 3);
        assert_eq!(n.find_context(CT, Some(BIG)).unwrap().id, 1);
        assert_eq!(n.find_context(CT, None).unwrap().id, 1);
        assert!(n.find_context(FIND, None).is_none());
    }

    #[test]
    fn unsupported_abstract_and_transfer_syntaxes() {
        let rq = requestor(vec![
            proposed(FIND, &[IMPLICIT], None),
            proposed(CT, &[BIG, DEFLATED], None),
            proposed(VERIFICATION, &[IMPLICIT], None),
        ])
        .build_request()
        .unwrap();
        let (ac, n) = accept_or_reject(&acceptor(), &rq).unwrap();
        // Rejected contexts echo the first proposed transfer syntax ("not significant").
        assert_eq!(
            results(&ac),
            vec![
                (1, pc_result::ABSTRACT_SYNTAX_NOT_SUPPORTED, Some(IMPLICIT)),
                (3, pc_result::TRANSFER_SYNTAXES_NOT_SUPPORTED, Some(BIG)),
                (5, pc_result::ACCEPTANCE, Some(IMPLICIT)),
            ]
        );
        assert_eq!(n.contexts[0].transfer_syntax, "");
        assert!(!n.contexts[1].accepted() && !n.contexts[1].local_scp);
        assert!(n.context(5).unwrap().accepted());
        assert!(n.context(7).is_none());
    }

    #[test]
    fn even_and_duplicate_context_ids_are_rejected_without_reason() {
        let mut rq = requestor(vec![
            proposed(VERIFICATION, &[IMPLICIT], None),
            proposed(VERIFICATION, &[IMPLICIT], None),
            proposed(VERIFICATION, &[IMPLICIT], None),
        ])
        .build_request()
        .unwrap();
        rq.presentation_contexts[1].id = 2;
        rq.presentation_contexts[2].id = 1;
        let (ac, _) = accept_or_reject(&acceptor(), &rq).unwrap();
        assert_eq!(
            results(&ac).iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
            vec![(1, 0), (2, pc_result::NO_REASON), (1, pc_result::NO_REASON)]
        );
    }

    /// Every requestor proposal (PS3.7 D.3.3.4: SCU only, SCP only, both, or no item) against
    /// every acceptor capability. Columns: proposal, acceptor may be (SCP, SCU) ->
    /// result, reply item (SCU, SCP), acceptor local (SCU, SCP).
    #[test]
    fn role_selection_answers_for_each_combination() {
        type Row = (
            Option<(bool, bool)>,
            (bool, bool),
            u8,
            Option<(u8, u8)>,
            (bool, bool),
        );
        let rows: [Row; 14] = [
            (
                Some((true, false)),
                (true, false),
                0,
                Some((1, 0)),
                (false, true),
            ),
            (
                Some((true, false)),
                (true, true),
                0,
                Some((1, 0)),
                (false, true),
            ),
            (Some((true, false)), (false, true), 1, None, (false, false)),
            (Some((true, false)), (false, false), 1, None, (false, false)),
            (Some((false, true)), (true, false), 1, None, (false, false)),
            (
                Some((false, true)),
                (true, true),
                0,
                Some((0, 1)),
                (true, false),
            ),
            (
                Some((false, true)),
                (false, true),
                0,
                Some((0, 1)),
                (true, false),
            ),
            (Some((false, true)), (false, false), 1, None, (false, false)),
            (
                Some((true, true)),
                (true, false),
                0,
                Some((1, 0)),
                (false, true),
            ),
            (
                Some((true, true)),
                (true, true),
                0,
                Some((1, 1)),
                (true, true),
            ),
            (
                Some((true, true)),
                (false, true),
                0,
                Some((0, 1)),
                (true, false),
            ),
            (Some((true, true)), (false, false), 1, None, (false, false)),
            (None, (true, false), 0, None, (false, true)),
            (None, (false, true), 1, None, (false, false)),
        ];
        for (proposal, (scp, scu), result, reply, local) in rows {
            let mut cfg = AcceptorConfig::new("SCP");
            cfg.contexts = vec![supported(CT, &[IMPLICIT], scp, scu)];
            let req = requestor(vec![proposed(CT, &[IMPLICIT], proposal)]);
            let rq = req.build_request().unwrap();
            let (ac, n) = accept_or_reject(&cfg, &rq).unwrap();
            let what = format!("proposal {proposal:?}, acceptor SCP {scp} SCU {scu}");
            assert_eq!(ac.presentation_contexts[0].result, result, "{what}");
            assert_eq!(
                role_items(&ac),
                reply
                    .map(|(a, b)| vec![(CT.to_string(), a, b)])
                    .unwrap_or_default(),
                "{what}"
            );
            assert_eq!(
                (n.contexts[0].local_scu, n.contexts[0].local_scp),
                local,
                "{what}"
            );
            // The requestor's reading of the same answer is the mirror image.
            let mine = req.interpret(&rq, &ac).unwrap();
            let c = &mine.contexts[0];
            if result == 0 {
                assert_eq!((c.local_scu, c.local_scp), (local.1, local.0), "{what}");
            } else {
                assert_eq!((c.local_scu, c.local_scp), (false, false), "{what}");
            }
        }
    }

    #[test]
    fn role_proposal_sent_once_per_sop_class() {
        let rq = requestor(vec![
            proposed(CT, &[IMPLICIT], Some((false, true))),
            proposed(CT, &[EXPLICIT], Some((false, true))),
        ])
        .build_request()
        .unwrap();
        let roles: Vec<_> = rq
            .user_info
            .unwrap()
            .items
            .into_iter()
            .filter(|i| matches!(i, UserItem::RoleSelection { .. }))
            .collect();
        assert_eq!(
            roles,
            vec![UserItem::RoleSelection {
                sop_class_uid: CT.into(),
                scu_role: 0,
                scp_role: 1
            }]
        );
    }

    fn echo_rq() -> AssociateRq {
        requestor(vec![proposed(VERIFICATION, &[IMPLICIT], None)])
            .build_request()
            .unwrap()
    }

    #[test]
    fn the_acceptance_echoes_the_reserved_bytes_after_the_ae_titles() {
        // PS3.8 Table 9-17: bytes 43-74 of the A-ASSOCIATE-AC are the request's, as the AE titles.
        let mut rq = echo_rq();
        rq.reserved.after_ae_titles = [0x5A; 32];
        rq.reserved.header = 0x77;
        let (ac, _) = accept_or_reject(&acceptor(), &rq).unwrap();
        assert_eq!(ac.reserved.after_ae_titles, [0x5A; 32]);
        assert_eq!(
            ac.reserved.header, 0,
            "the other reserved fields are sent as 00H"
        );
        let (ac, _) = accept_or_reject(&acceptor(), &echo_rq()).unwrap();
        assert_eq!(ac.reserved.after_ae_titles, [0; 32]);
    }

    #[test]
    fn rejections() {
        // Wrong application context: 1/1/2.
        let mut rq = echo_rq();
        rq.application_context = "1.2.3.4".into();
        assert_eq!(
            accept_or_reject(&acceptor(), &rq),
            Err(AssociateRj {
                result: 1,
                source: 1,
                reason: 2,
                ..Default::default()
            })
        );
        // The application context may carry a trailing NUL.
        let mut rq = echo_rq();
        rq.application_context = format!("{DICOM_APPLICATION_CONTEXT}\0");
        assert!(accept_or_reject(&acceptor(), &rq).is_ok());

        // Called AE title not ours: 1/1/7, only when required.
        let mut cfg = acceptor();
        let mut rq = echo_rq();
        rq.called_ae = AeTitle::new("OTHER").unwrap();
        assert!(accept_or_reject(&cfg, &rq).is_ok());
        cfg.require_called_aet = true;
        assert_eq!(
            accept_or_reject(&cfg, &rq),
            Err(AssociateRj {
                result: 1,
                source: 1,
                reason: 7,
                ..Default::default()
            })
        );
        rq.called_ae = AeTitle::new("  STORESCP").unwrap();
        assert!(accept_or_reject(&cfg, &rq).is_ok());

        // Calling AE title not in the allowed list: 1/1/3.
        let mut cfg = acceptor();
        cfg.allowed_calling_aets = Some(vec!["PACS".into(), "XELERIS ".into()]);
        assert!(accept_or_reject(&cfg, &echo_rq()).is_ok());
        let mut rq = echo_rq();
        rq.calling_ae = AeTitle::new("INTRUDER").unwrap();
        assert_eq!(
            accept_or_reject(&cfg, &rq),
            Err(AssociateRj {
                result: 1,
                source: 1,
                reason: 3,
                ..Default::default()
            })
        );

        // Protocol version without bit 0: 1/2/2 (checked first).
        let mut rq = echo_rq();
        rq.protocol_version = 0x0002;
        rq.application_context = "1.2.3".into();
        assert_eq!(
            accept_or_reject(&acceptor(), &rq),
            Err(AssociateRj {
                result: 1,
                source: 2,
                reason: 2,
                ..Default::default()
            })
        );
        // Other bits alongside bit 0 are fine (PS3.8 §9.3.2: only bit 0 is defined).
        let mut rq = echo_rq();
        rq.protocol_version = 0x0003;
        assert!(accept_or_reject(&acceptor(), &rq).is_ok());
    }

    /// PS3.8 §9.3.2: an A-ASSOCIATE-RQ carries one or more Presentation Context Items. One
    /// without any is refused (1/1/1), never answered with an A-ASSOCIATE-AC that has none
    /// (§9.3.3 requires one or more there too).
    #[test]
    fn request_without_presentation_contexts_is_rejected() {
        let mut rq = echo_rq();
        rq.presentation_contexts.clear();
        assert_eq!(accept_or_reject(&acceptor(), &rq), Err(reject::NO_REASON));
        assert_eq!(
            reject::NO_REASON,
            AssociateRj {
                result: 1,
                source: 1,
                reason: 1,
                ..Default::default()
            }
        );
        // Also when nothing else is wrong with it (no user information, AE titles checked).
        let mut cfg = acceptor();
        cfg.require_called_aet = true;
        cfg.allowed_calling_aets = Some(vec!["XELERIS".into()]);
        rq.user_info = None;
        assert_eq!(accept_or_reject(&cfg, &rq), Err(reject::NO_REASON));
        // The same request decoded from the wire (the decoder itself lets it through).
        let wire = Pdu::AssociateRq(rq).encode();
        let Ok(Pdu::AssociateRq(rq_in)) = Pdu::decode(&wire, ASSOCIATION_PDU_LIMIT) else {
            panic!()
        };
        assert!(rq_in.presentation_contexts.is_empty());
        assert_eq!(accept_or_reject(&cfg, &rq_in), Err(reject::NO_REASON));
    }

    /// A request whose every context is rejected is still accepted, each context answered
    /// with its own result: PS3.8 §9.3.3 asks only for one Presentation Context Item per
    /// proposed context in the AC, whatever its result, and leaves it to the requestor to
    /// abort or release (as DCMTK's and pynetdicom's requestors do).
    #[test]
    fn request_with_every_context_rejected_is_accepted() {
        let rq = requestor(vec![
            proposed(FIND, &[IMPLICIT], None),
            proposed(CT, &[BIG], None),
        ])
        .build_request()
        .unwrap();
        let (ac, n) = accept_or_reject(&acceptor(), &rq).unwrap();
        assert_eq!(
            results(&ac),
            vec![
                (1, pc_result::ABSTRACT_SYNTAX_NOT_SUPPORTED, Some(IMPLICIT)),
                (3, pc_result::TRANSFER_SYNTAXES_NOT_SUPPORTED, Some(BIG)),
            ]
        );
        assert!(n.contexts.iter().all(|c| !c.accepted()));
    }

    #[test]
    fn acceptor_user_information_and_summary() {
        let mut cfg = acceptor();
        cfg.max_pdu = 65536;
        cfg.implementation_version_name = Some("SCP_1".into());
        cfg.extended_negotiation.insert(FIND.into(), vec![1, 0]);
        let mut req = requestor(vec![
            proposed(VERIFICATION, &[IMPLICIT], None),
            proposed(FIND, &[IMPLICIT], None),
        ]);
        req.max_pdu = 4096;
        req.implementation_class_uid = "1.2.3.4".into();
        req.implementation_version_name = Some("REQ_9".into());
        req.async_window = Some((2, 1));
        req.extended_negotiation = vec![(FIND.into(), vec![1, 1, 1]), (CT.into(), vec![1])];
        req.common_extended = vec![(
            "1.2.840.10008.5.1.4.1.1.2.1".into(),
            "1.2.840.10008.4.2".into(),
            vec![CT.into()],
        )];
        req.user_identity = Some((2, true, b"alice".to_vec(), b"pw".to_vec()));
        let rq = req.build_request().unwrap();
        let ui = rq.user_info.as_ref().unwrap();
        assert_eq!(ui.max_length(), Some(4096));
        assert_eq!(ui.async_window(), Some((2, 1)));
        assert_eq!(ui.implementation_version_name(), Some("REQ_9"));

        let (ac, n) = accept_or_reject(&cfg, &rq).unwrap();
        let items = &ac.user_info.as_ref().unwrap().items;
        assert_eq!(
            items,
            &vec![
                UserItem::MaximumLength(65536),
                UserItem::ImplementationClassUid(IMPLEMENTATION_CLASS_UID.into()),
                UserItem::ImplementationVersionName("SCP_1".into()),
                // A reply only for the SOP class the acceptor knows.
                UserItem::SopClassExtended {
                    sop_class_uid: FIND.into(),
                    info: vec![1, 0]
                },
                // Positive response requested for username+passcode: empty server response.
                UserItem::UserIdentityAc {
                    server_response: vec![]
                },
            ]
        );
        assert_eq!(ac.called_ae, rq.called_ae);
        assert_eq!(ac.calling_ae, rq.calling_ae);
        assert_eq!(n.calling_ae, "XELERIS");
        assert_eq!(n.called_ae, "STORESCP");
        assert_eq!(n.peer_max_pdu, 4096);
        assert_eq!(n.local_max_pdu, 65536);
        assert_eq!(n.peer_implementation_class_uid, "1.2.3.4");
        assert_eq!(n.peer_implementation_version_name.as_deref(), Some("REQ_9"));
        assert_eq!(
            n.user_identity,
            Some((2, b"alice".to_vec(), b"pw".to_vec()))
        );
        assert_eq!(n.extended_negotiation, vec![(FIND.to_string(), vec![1, 0])]);
        assert_eq!(
            n.common_extended,
            vec![(
                "1.2.840.10008.5.1.4.1.1.2.1".to_string(),
                "1.2.840.10008.4.2".to_string(),
                vec![CT.to_string()]
            )]
        );

        // The requestor's view of the same answer.
        let mine = req.interpret(&rq, &ac).unwrap();
        assert_eq!(mine.peer_max_pdu, 65536);
        assert_eq!(mine.local_max_pdu, 4096);
        assert_eq!(mine.peer_implementation_class_uid, IMPLEMENTATION_CLASS_UID);
        assert_eq!(
            mine.extended_negotiation,
            vec![(FIND.to_string(), vec![1, 0])]
        );
        assert_eq!(mine.contexts.len(), 2);
        assert!(mine.contexts[0].accepted() && mine.contexts[0].local_scu);
        assert_eq!(
            mine.contexts[1].result,
            pc_result::ABSTRACT_SYNTAX_NOT_SUPPORTED
        );
    }

    /// PS3.7 D.3.3.5.2: at most one SOP Class Extended Negotiation Sub-Item per SOP class in the
    /// AC. A request repeating the item (or padding its UID) must not multiply our replies: 1900
    /// copies fit one request's User Information item, but 1900 replies would not fit ours
    /// (16-bit item length, PS3.8 §9.3.3.3), and the AC sent would be corrupt.
    #[test]
    fn repeated_requests_get_one_reply_and_the_ac_stays_valid() {
        let mut cfg = acceptor();
        cfg.extended_negotiation.insert(FIND.into(), vec![7; 20]);
        let mut rq = echo_rq();
        let ui = rq.user_info.as_mut().unwrap();
        for i in 0..1900 {
            ui.items.push(UserItem::SopClassExtended {
                // Some copies padded: the reply names the SOP class unpadded.
                sop_class_uid: if i % 2 == 0 {
                    FIND.to_string()
                } else {
                    format!("{FIND}\0")
                },
                info: vec![],
            });
        }
        for _ in 0..3 {
            ui.items.push(UserItem::UserIdentityRq {
                identity_type: 1,
                positive_response_requested: 1,
                primary: b"u".to_vec(),
                secondary: vec![],
            });
        }
        // The request itself is a valid PDU.
        let wire = Pdu::AssociateRq(rq.clone()).encode();
        assert_eq!(
            Pdu::decode(&wire, ASSOCIATION_PDU_LIMIT),
            Ok(Pdu::AssociateRq(rq.clone()))
        );
        let (ac, n) = accept_or_reject(&cfg, &rq).unwrap();
        let items = &ac.user_info.as_ref().unwrap().items;
        let ext: Vec<_> = items
            .iter()
            .filter(|i| matches!(i, UserItem::SopClassExtended { .. }))
            .collect();
        assert_eq!(
            ext,
            vec![&UserItem::SopClassExtended {
                sop_class_uid: FIND.into(),
                info: vec![7; 20]
            }]
        );
        assert_eq!(
            items
                .iter()
                .filter(|i| matches!(i, UserItem::UserIdentityAc { .. }))
                .count(),
            1
        );
        assert_eq!(
            n.extended_negotiation,
            vec![(FIND.to_string(), vec![7; 20])]
        );
        let ac = Pdu::AssociateAc(ac);
        assert_eq!(Pdu::decode(&ac.encode(), ASSOCIATION_PDU_LIMIT), Ok(ac));
    }

    /// Every size of the acceptor configuration is checked (PS3.8 Annex D.1, §9.3.3.3, §9.3.5;
    /// PS3.7 D.3.3.2), and an invalid configuration answers nothing but 1/1/1.
    #[test]
    fn acceptor_config_sizes_are_checked() {
        assert_eq!(AcceptorConfig::new("SCP").validate(), Ok(()));
        assert_eq!(acceptor().validate(), Ok(()));
        for ok in [0, MIN_MAX_PDU, 4096, DEFAULT_MAX_PDU, u32::MAX] {
            let mut cfg = acceptor();
            cfg.max_pdu = ok;
            assert_eq!(cfg.validate(), Ok(()), "max PDU {ok}");
        }
        let mut bad: Vec<(&str, AcceptorConfig)> = Vec::new();
        for max in [1, 6, MIN_MAX_PDU - 1] {
            let mut c = acceptor();
            c.max_pdu = max;
            bad.push(("maximum PDU length", c));
        }
        let mut c = acceptor();
        c.ae_title = "SEVENTEEN-CHARS-X".into();
        bad.push(("AE title", c));
        let mut c = acceptor();
        c.ae_title = "   ".into();
        bad.push(("AE title", c));
        let mut c = acceptor();
        c.implementation_class_uid = "1.".repeat(40);
        bad.push(("implementation class UID", c));
        let mut c = acceptor();
        c.implementation_class_uid = String::new();
        bad.push(("implementation class UID", c));
        let mut c = acceptor();
        c.implementation_version_name = Some(String::new());
        bad.push(("implementation version name", c));
        let mut c = acceptor();
        c.implementation_version_name = Some("SEVENTEEN_CHARS__".into());
        bad.push(("implementation version name", c));
        let mut c = acceptor();
        c.contexts.push(supported(
            &format!("1.{}", "2".repeat(70)),
            &[IMPLICIT],
            true,
            false,
        ));
        bad.push(("supported context", c));
        let mut c = acceptor();
        c.contexts.push(supported(CT, &["not.a.uid"], true, false));
        bad.push(("supported context", c));
        let mut c = acceptor();
        c.extended_negotiation.insert(FIND.into(), vec![0; 65_535]);
        bad.push(("extended negotiation reply", c));
        let mut c = acceptor();
        c.extended_negotiation.insert("1.2.x".into(), vec![1]);
        bad.push(("extended negotiation", c));
        let mut c = acceptor();
        for uid in [FIND, CT, NM] {
            c.extended_negotiation.insert(uid.into(), vec![0; 25_000]);
        }
        bad.push(("user information item", c));
        // Only UID spellings are left to `validate` (run once, at configuration time); everything
        // that could corrupt the A-ASSOCIATE-AC is also checked for every association.
        let uid_only = ["supported context", "extended negotiation"];
        for (what, cfg) in bad {
            let e = cfg.validate().expect_err(what);
            assert!(e.contains(what), "{what}: {e}");
            if uid_only.contains(&what) || cfg.implementation_class_uid.is_empty() {
                continue;
            }
            assert!(cfg.validate_sizes().is_err(), "{what}");
            // No A-ASSOCIATE-AC from it, whatever the request.
            assert_eq!(
                accept_or_reject(&cfg, &echo_rq()),
                Err(reject::NO_REASON),
                "{what}"
            );
        }
    }

    /// The largest A-ASSOCIATE-AC a configuration that passes `validate` can produce still
    /// encodes correctly: 128 accepted contexts with role replies on 64-character UIDs, the
    /// longest implementation UID and version name, a user identity reply and an extended
    /// negotiation reply filling what is left of the 65535-byte User Information item.
    #[test]
    fn largest_valid_acceptor_config_gives_a_valid_ac() {
        let uid = |i: usize| format!("1.2.{}{i:03}", "9".repeat(57));
        let mut cfg = AcceptorConfig::new("SCP");
        cfg.implementation_class_uid = format!("1.2.{}", "3".repeat(60));
        cfg.implementation_version_name = Some("V".repeat(16));
        cfg.contexts = (0..130)
            .map(|i| supported(&uid(i), &[IMPLICIT], true, true))
            .collect();
        let ext = uid(0);
        let fixed = 8 + (4 + 64) + 128 * (8 + 64) + (4 + 16) + 6 + (4 + 2 + 64);
        cfg.extended_negotiation
            .insert(ext.clone(), vec![5; 65_535 - fixed]);
        assert_eq!(cfg.validate(), Ok(()));
        let mut req = requestor(
            (0..128)
                .map(|i| proposed(&uid(i), &[IMPLICIT], Some((true, true))))
                .collect(),
        );
        req.extended_negotiation = vec![(ext.clone(), vec![1])];
        req.user_identity = Some((1, true, b"u".to_vec(), vec![]));
        let rq = req.build_request().unwrap();
        let (ac, _) = accept_or_reject(&cfg, &rq).unwrap();
        assert!(ac.presentation_contexts.iter().all(|p| p.result == 0));
        let ui_len: usize = ac
            .user_info
            .as_ref()
            .unwrap()
            .items
            .iter()
            .map(|i| 4 + user_item_value_len(i))
            .sum();
        assert_eq!(ui_len, 65_535);
        let ac = Pdu::AssociateAc(ac);
        assert_eq!(Pdu::decode(&ac.encode(), ASSOCIATION_PDU_LIMIT), Ok(ac));
        // One byte more and the configuration is refused.
        cfg.extended_negotiation.get_mut(&ext).unwrap().push(5);
        assert!(cfg
            .validate()
            .unwrap_err()
            .contains("user information item"));
    }

    #[test]
    fn user_identity_without_positive_response_gets_no_reply() {
        let mut req = requestor(vec![proposed(VERIFICATION, &[IMPLICIT], None)]);
        req.user_identity = Some((1, false, b"bob".to_vec(), vec![]));
        let rq = req.build_request().unwrap();
        let (ac, n) = accept_or_reject(&acceptor(), &rq).unwrap();
        assert!(!ac
            .user_info
            .unwrap()
            .items
            .iter()
            .any(|i| matches!(i, UserItem::UserIdentityAc { .. })));
        assert_eq!(n.user_identity, Some((1, b"bob".to_vec(), vec![])));
    }

    #[test]
    fn acceptor_handles_request_without_user_information() {
        let mut rq = echo_rq();
        rq.user_info = None;
        let (ac, n) = accept_or_reject(&acceptor(), &rq).unwrap();
        assert_eq!(ac.presentation_contexts[0].result, 0);
        assert_eq!(n.peer_max_pdu, 0);
        assert_eq!(n.peer_implementation_class_uid, "");
    }

    #[test]
    fn build_request_assigns_odd_ids_and_validates() {
        let mut req = requestor(
            (0..128)
                .map(|i| proposed(&format!("1.2.3.{i}"), &[IMPLICIT], None))
                .collect(),
        );
        let rq = req.build_request().unwrap();
        let ids: Vec<u8> = rq.presentation_contexts.iter().map(|p| p.id).collect();
        assert_eq!(ids, (0..128).map(|i| 2 * i + 1).collect::<Vec<u8>>());
        req.contexts.push(proposed("1.2.3.999", &[IMPLICIT], None));
        assert!(req.build_request().unwrap_err().contains("at most 128"));

        assert!(requestor(vec![]).build_request().is_err());
        assert!(requestor(vec![proposed(CT, &[], None)])
            .build_request()
            .is_err());
        assert!(requestor(vec![proposed("1.2.a", &[IMPLICIT], None)])
            .build_request()
            .is_err());
        assert!(requestor(vec![proposed(CT, &["1..2"], None)])
            .build_request()
            .is_err());
        let mut bad_ae = requestor(vec![proposed(CT, &[IMPLICIT], None)]);
        bad_ae.called_ae = "WAY-TOO-LONG-AE-TITLE".into();
        assert!(bad_ae.build_request().is_err());
        let mut bad_name = requestor(vec![proposed(CT, &[IMPLICIT], None)]);
        bad_name.implementation_version_name = Some("SEVENTEEN_CHARS__".into());
        assert!(bad_name.build_request().is_err());
    }

    #[test]
    fn check_uid_rules() {
        for ok in ["1", "1.2.840.10008.1.1", &"1.".repeat(31)[..61]] {
            assert_eq!(check_uid(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".1", "1.", "1..2", "1.2a", "1.2 ", &"1".repeat(65)] {
            assert!(check_uid(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn requestor_rejects_answers_it_did_not_ask_for() {
        let req = requestor(vec![proposed(CT, &[EXPLICIT, IMPLICIT], None)]);
        let rq = req.build_request().unwrap();
        let (ac, _) = accept_or_reject(&acceptor(), &rq).unwrap();
        assert_eq!(
            req.interpret(&rq, &ac).unwrap().contexts[0].transfer_syntax,
            EXPLICIT
        );

        // A context that was not proposed.
        for id in [3u8, 2, 0, 255] {
            let mut bad = ac.clone();
            bad.presentation_contexts[0].id = id;
            let e = req.interpret(&rq, &bad).unwrap_err();
            assert!(e.contains("not proposed"), "{id}: {e}");
        }
        // A transfer syntax that was not proposed for that context.
        let mut bad = ac.clone();
        bad.presentation_contexts[0].transfer_syntax = Some(BIG.into());
        assert!(req
            .interpret(&rq, &bad)
            .unwrap_err()
            .contains("transfer syntax"));
        let mut bad = ac.clone();
        bad.presentation_contexts[0].transfer_syntax = None;
        assert!(req.interpret(&rq, &bad).is_err());
        // ...unless the context was rejected, where the transfer syntax is not significant.
        let mut rejected = ac.clone();
        rejected.presentation_contexts[0].result = pc_result::TRANSFER_SYNTAXES_NOT_SUPPORTED;
        rejected.presentation_contexts[0].transfer_syntax = Some(BIG.into());
        let n = req.interpret(&rq, &rejected).unwrap();
        assert!(!n.contexts[0].accepted());
        assert_eq!(n.contexts[0].transfer_syntax, "");
        // A NUL-padded transfer syntax from the acceptor matches.
        let mut padded = ac.clone();
        padded.presentation_contexts[0].transfer_syntax = Some(format!("{EXPLICIT}\0"));
        assert_eq!(
            req.interpret(&rq, &padded).unwrap().contexts[0].transfer_syntax,
            EXPLICIT
        );
    }

    /// Both sides through the real encoder and decoder agree on every context.
    #[test]
    fn negotiation_over_encoded_pdus() {
        let req = requestor(vec![
            proposed(VERIFICATION, &[IMPLICIT], None),
            proposed(NM, &[BIG, IMPLICIT], Some((true, true))),
            proposed(FIND, &[IMPLICIT], None),
        ]);
        let rq = req.build_request().unwrap();
        let wire = Pdu::AssociateRq(rq.clone()).encode();
        let Ok(Pdu::AssociateRq(rq_in)) = Pdu::decode(&wire, ASSOCIATION_PDU_LIMIT) else {
            panic!()
        };
        let (ac, theirs) = accept_or_reject(&acceptor(), &rq_in).unwrap();
        let wire = Pdu::AssociateAc(ac).encode();
        let Ok(Pdu::AssociateAc(ac_in)) = Pdu::decode(&wire, ASSOCIATION_PDU_LIMIT) else {
            panic!()
        };
        let mine = req.interpret(&rq, &ac_in).unwrap();
        assert_eq!(mine.contexts.len(), theirs.contexts.len());
        for (m, t) in mine.contexts.iter().zip(&theirs.contexts) {
            assert_eq!(
                (m.id, m.result, &m.transfer_syntax),
                (t.id, t.result, &t.transfer_syntax)
            );
            assert_eq!((m.local_scu, m.local_scp), (t.local_scp, t.local_scu));
        }
        assert_eq!(mine.contexts[1].transfer_syntax, IMPLICIT);
        assert!(mine.contexts[1].local_scu && mine.contexts[1].local_scp);
        assert!(!mine.contexts[2].accepted());
    }
    /// A request built in code (not decoded) may hold a context without transfer syntaxes;
    /// the acceptor answers "transfer syntaxes not supported" instead of panicking.
    #[test]
    fn context_without_transfer_syntaxes_is_rejected_not_a_panic() {
        let mut rq = echo_rq();
        rq.presentation_contexts[0].transfer_syntaxes.clear();
        let (ac, _) = accept_or_reject(&acceptor(), &rq).unwrap();
        assert_eq!(
            results(&ac),
            vec![(1, pc_result::TRANSFER_SYNTAXES_NOT_SUPPORTED, Some(""))]
        );
        rq.presentation_contexts[0].abstract_syntax = FIND.into();
        let (ac, _) = accept_or_reject(&acceptor(), &rq).unwrap();
        assert_eq!(
            ac.presentation_contexts[0].result,
            pc_result::ABSTRACT_SYNTAX_NOT_SUPPORTED
        );
    }
    /// Whatever a caller (e.g. Python) puts in the request must fit the 16-bit item lengths of
    /// PS3.8 §9.3.2 and PS3.7 Annex D, or be refused with an error; never a corrupt PDU.
    #[test]
    fn build_request_refuses_what_does_not_fit_an_item() {
        let base = || requestor(vec![proposed(VERIFICATION, &[IMPLICIT], None)]);
        let roundtrips = |cfg: &RequestorConfig| {
            let rq = cfg.build_request().unwrap();
            let pdu = Pdu::AssociateRq(rq);
            assert_eq!(Pdu::decode(&pdu.encode(), ASSOCIATION_PDU_LIMIT), Ok(pdu));
        };
        // Large but fitting values are sent intact.
        let mut ok = base();
        ok.user_identity = Some((5, true, vec![b'j'; 60_000], vec![]));
        roundtrips(&ok);
        let mut ok = base();
        ok.contexts[0].transfer_syntaxes = (0..900).map(|i| format!("1.2.3.{i}")).collect();
        roundtrips(&ok);

        let mut bad = Vec::new();
        let mut c = base();
        c.user_identity = Some((5, true, vec![b'j'; 70_000], vec![]));
        bad.push(("user identity", c));
        let mut c = base();
        c.user_identity = Some((2, true, vec![b'u'; 40_000], vec![b'p'; 40_000]));
        bad.push(("user identity, both fields", c));
        let mut c = base();
        c.extended_negotiation = vec![(FIND.into(), vec![0; 70_000])];
        bad.push(("extended negotiation", c));
        let mut c = base();
        c.extended_negotiation = (0..3)
            .map(|_| (FIND.to_string(), vec![0; 30_000]))
            .collect();
        bad.push(("user information total", c));
        let mut c = base();
        c.common_extended = vec![(
            CT.into(),
            "1.2.840.10008.4.2".into(),
            (0..2500)
                .map(|i| format!("1.2.840.10008.5.1.4.1.1.{i}"))
                .collect(),
        )];
        bad.push(("common extended related classes", c));
        let mut c = base();
        c.contexts[0].transfer_syntaxes = (0..3000)
            .map(|i| format!("1.2.840.10008.1.2.{i}"))
            .collect();
        bad.push(("presentation context", c));
        let mut c = base();
        c.implementation_class_uid = "1.2.\u{e9}".into();
        bad.push(("implementation class UID", c));
        let mut c = base();
        c.extended_negotiation = vec![("not a uid".into(), vec![1])];
        bad.push(("extended negotiation UID", c));
        let mut c = base();
        c.common_extended = vec![(CT.into(), "4.2.".into(), vec![])];
        bad.push(("common extended service class UID", c));
        for (what, cfg) in bad {
            assert!(cfg.build_request().is_err(), "{what} accepted");
        }
    }

    /// The size arithmetic used above agrees with the encoder for every kind of sub-item.
    #[test]
    fn user_item_value_len_matches_the_encoder() {
        let items = vec![
            UserItem::MaximumLength(1),
            UserItem::ImplementationClassUid("1.2.3".into()),
            UserItem::AsyncOperationsWindow {
                invoked: 1,
                performed: 1,
            },
            UserItem::RoleSelection {
                sop_class_uid: CT.into(),
                scu_role: 1,
                scp_role: 0,
            },
            UserItem::ImplementationVersionName("V1".into()),
            UserItem::SopClassExtended {
                sop_class_uid: FIND.into(),
                info: vec![1, 2, 3],
            },
            UserItem::SopClassCommonExtended {
                version: 0,
                sop_class_uid: CT.into(),
                service_class_uid: "1.2.840.10008.4.2".into(),
                related_general_sop_classes: vec![NM.into(), "1.2".into()],
            },
            UserItem::UserIdentityRq {
                identity_type: 2,
                positive_response_requested: 0,
                primary: b"ab".to_vec(),
                secondary: b"cde".to_vec(),
            },
            UserItem::UserIdentityAc {
                server_response: b"xyz".to_vec(),
            },
            UserItem::Unknown {
                item_type: 0x70,
                data: vec![9; 7],
            },
        ];
        let mut rq = echo_rq();
        rq.user_info = Some(UserInformation::default());
        let empty = Pdu::AssociateRq(rq.clone()).encode().len();
        for item in items {
            rq.user_info = Some(UserInformation {
                items: vec![item.clone()],
                ..Default::default()
            });
            let with = Pdu::AssociateRq(rq.clone()).encode().len();
            assert_eq!(with - empty, 4 + user_item_value_len(&item), "{item:?}");
        }
    }
}
