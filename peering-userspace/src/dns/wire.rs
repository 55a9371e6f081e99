//! One DNS query in, one response out: sans-IO, through hickory-proto (no
//! hand-written wire format).
//!
//! Work per query is bounded before anything is allocated: the message
//! fits [`MAX_MESSAGE`] bytes (the caller's buffer), and its 12-byte header
//! is checked first (a query, one question, no answer or authority
//! records, at most one additional record for EDNS), so the full parse
//! walks at most one question and one OPT record. A message that is not
//! even a header, or is a response, is dropped (answering a response could
//! loop two resolvers); one that is a query but malformed gets FORMERR.

use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::name::private_name;
use super::table::{Decision, DnsTable, QType};

/// Largest message taken (UDP and TCP): the EDNS buffer size DNS Flag Day
/// 2020 settled on. A query is far smaller; anything larger is dropped.
pub const MAX_MESSAGE: usize = 1232;

/// TTL of the answers, in seconds: short, so a permission taken back
/// (an option turned off, a peering deleted) is forgotten by caches soon.
pub const TTL: u32 = 60;

/// Why a message got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Shorter than a DNS header.
    Short,
    /// A response, not a query.
    NotQuery,
    /// Larger than [`MAX_MESSAGE`].
    Oversize,
    /// The response could not be encoded.
    Emit,
}

/// What a response said, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// NOERROR (with or without a record).
    Answer,
    NxDomain,
    Refused,
    FormErr,
    NotImp,
}

/// The outcome of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Reply(Vec<u8>, Kind),
    Drop(Drop),
}

/// Answers `packet`, sent by `src` to resolver address `dst`.
pub fn respond(table: &DnsTable, src: Ipv4Addr, dst: Ipv4Addr, packet: &[u8]) -> Outcome {
    if packet.len() > MAX_MESSAGE {
        return Outcome::Drop(Drop::Oversize);
    }
    let Ok(header) = Header::read(&mut BinDecoder::new(packet)) else {
        return Outcome::Drop(Drop::Short);
    };
    if header.message_type != MessageType::Query {
        return Outcome::Drop(Drop::NotQuery);
    }
    if header.op_code != OpCode::Query {
        return error(&header, ResponseCode::NotImp, Kind::NotImp);
    }
    let c = header.counts;
    if c.queries != 1 || c.answers != 0 || c.authorities != 0 || c.additionals > 1 {
        return error(&header, ResponseCode::FormErr, Kind::FormErr);
    }
    let Ok(query) = Message::from_vec(packet) else {
        return error(&header, ResponseCode::FormErr, Kind::FormErr);
    };
    let Some(q) = query.queries.first() else {
        return error(&header, ResponseCode::FormErr, Kind::FormErr);
    };
    let mut resp = Message::response(header.id, OpCode::Query);
    resp.metadata.recursion_desired = header.recursion_desired;
    resp.add_query(q.clone());
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_MESSAGE as u16);
        resp.set_edns(edns);
    }
    let decision = if q.query_class() == DNSClass::IN {
        let labels: Vec<&[u8]> = q.name().iter().collect();
        table.decide(src, dst, &labels, qtype(q.query_type()))
    } else {
        Decision::Refused
    };
    let (code, kind, record) = match decision {
        Decision::A(ip) => {
            let r = Record::from_rdata(q.name().clone(), TTL, RData::A(A(ip)));
            (ResponseCode::NoError, Kind::Answer, Some(r))
        }
        Decision::Ptr { ip, region } => match Name::from_ascii(private_name(ip, region)) {
            Ok(target) => {
                let r = Record::from_rdata(q.name().clone(), TTL, RData::PTR(PTR(target)));
                (ResponseCode::NoError, Kind::Answer, Some(r))
            }
            Err(_) => return Outcome::Drop(Drop::Emit),
        },
        Decision::NoData => (ResponseCode::NoError, Kind::Answer, None),
        Decision::NxDomain => (ResponseCode::NXDomain, Kind::NxDomain, None),
        Decision::Refused => (ResponseCode::Refused, Kind::Refused, None),
    };
    resp.metadata.response_code = code;
    if let Some(r) = record {
        resp.add_answer(r);
    }
    encode(&resp, kind)
}

fn qtype(t: RecordType) -> QType {
    match t {
        RecordType::A => QType::A,
        RecordType::PTR => QType::Ptr,
        RecordType::ANY => QType::Any,
        _ => QType::Other,
    }
}

/// A response carrying only the header: the id, the opcode and `code`.
fn error(h: &Header, code: ResponseCode, kind: Kind) -> Outcome {
    let mut resp = Message::error_msg(h.id, h.op_code, code);
    resp.metadata.recursion_desired = h.recursion_desired;
    encode(&resp, kind)
}

fn encode(m: &Message, kind: Kind) -> Outcome {
    match m.to_vec() {
        Ok(bytes) => Outcome::Reply(bytes, kind),
        Err(_) => Outcome::Drop(Drop::Emit),
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
