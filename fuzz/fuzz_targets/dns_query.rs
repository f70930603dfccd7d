//! Arbitrary bytes as what a container sends to berth's embedded DNS server
//! (`berth_net::dns`), with a fixed in-memory resolver (`fuzz_addresses`: `web`, `empty`,
//! `replicas` with 60 addresses, PTR for 100.72.0.2 and .3; no upstream, nothing is
//! forwarded and no socket is opened).
//!
//! The first byte chooses the mode, the rest is the input:
//! - bit 0 clear: one UDP datagram, bit 0 set: one message over TCP (`fuzz_one`);
//! - bit 1 set: sent by a stranger (an address not on the network);
//! - bit 2 set: the rest is a whole TCP connection's bytes, read with the server's frame
//!   reader (`fuzz_tcp_stream`; bits 0 and 1 ignored).
//!
//! Invariants for every answer: it decodes, is a response with the query's id, echoes the
//! query's questions (unless they alone exceed the UDP limit: then TC and none), and its
//! response code is the one the rules give (REFUSED for a stranger, NOTIMP for another
//! opcode, FORMERR unless exactly one question, else NOERROR and only for a name the
//! resolver knows, class IN); a local A/ANY answer has exactly the resolver's addresses, unless truncated (UDP only: TC and no record); a UDP answer
//! fits the client's limit (512 bytes, or its EDNS payload size clamped to 512..=1232).
//! An input that does not decode as a query gets no answer.

#![no_main]

use std::net::Ipv4Addr;

use berth_net::dns::{fuzz_addresses, fuzz_one, fuzz_tcp_stream};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;

fn check(query_bytes: &[u8], answer: Option<Vec<u8>>, udp: bool, stranger: bool) {
    let query = match Message::from_vec(query_bytes) {
        Ok(q) if q.metadata.message_type == MessageType::Query => q,
        _ => {
            assert!(answer.is_none(), "INVARIANT: no answer to a non-query");
            return;
        }
    };
    let Some(bytes) = answer else {
        // Dropped or forwarded: only allowed for a client's ordinary query of a name the
        // resolver does not know.
        assert!(!stranger, "INVARIANT: a stranger always gets REFUSED");
        assert_eq!(
            query.metadata.op_code,
            OpCode::Query,
            "INVARIANT: NOTIMP expected"
        );
        assert_eq!(query.queries.len(), 1, "INVARIANT: FORMERR expected");
        return;
    };
    let answer = Message::from_vec(&bytes)
        .unwrap_or_else(|e| panic!("INVARIANT: our answer must decode: {e}"));
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    assert_eq!(
        answer.metadata.id, query.metadata.id,
        "INVARIANT: the query's id"
    );
    if answer.queries.is_empty() && query.queries.len() > 1 {
        // Even the questions did not fit the client's UDP limit.
        assert!(
            udp && answer.metadata.truncation,
            "INVARIANT: questions echoed"
        );
    } else {
        assert_eq!(answer.queries, query.queries, "INVARIANT: questions echoed");
    }
    if udp {
        let limit = match &query.edns {
            Some(edns) => usize::from(edns.max_payload().clamp(512, 1232)),
            None => 512,
        };
        assert!(
            bytes.len() <= limit,
            "INVARIANT: UDP answer of {} bytes over the client's limit of {limit}",
            bytes.len()
        );
    } else {
        assert!(!answer.metadata.truncation, "INVARIANT: no TC over TCP");
    }
    let code = answer.metadata.response_code;
    if stranger {
        assert_eq!(code, ResponseCode::Refused, "INVARIANT: stranger refused");
        assert!(answer.answers.is_empty());
        return;
    }
    if query.metadata.op_code != OpCode::Query {
        assert_eq!(code, ResponseCode::NotImp, "INVARIANT: other opcode");
        return;
    }
    let [question] = query.queries.as_slice() else {
        assert_eq!(code, ResponseCode::FormErr, "INVARIANT: not one question");
        return;
    };
    assert_eq!(code, ResponseCode::NoError, "INVARIANT: a local answer");
    assert!(
        answer.metadata.authoritative,
        "INVARIANT: local answers are authoritative"
    );
    assert_eq!(
        question.query_class(),
        DNSClass::IN,
        "INVARIANT: only class IN is local"
    );
    let mut name = question.name().to_ascii().to_ascii_lowercase();
    if name.ends_with('.') {
        name.pop();
    }
    let qtype = question.query_type();
    if let Some(addresses) = fuzz_addresses(&name) {
        let got: Vec<Ipv4Addr> = answer
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::A(a) => a.0,
                other => panic!("INVARIANT: only A records for a local name, got {other:?}"),
            })
            .collect();
        let want = if matches!(qtype, RecordType::A | RecordType::ANY) {
            addresses
        } else {
            Vec::new()
        };
        if answer.metadata.truncation {
            assert!(
                got.is_empty(),
                "INVARIANT: a truncated answer has no record"
            );
        } else {
            assert_eq!(
                got, want,
                "INVARIANT: the resolver's addresses for {name:?}"
            );
        }
        return;
    }
    assert_eq!(
        qtype,
        RecordType::PTR,
        "INVARIANT: an unknown name is forwarded"
    );
    let Ok(IpNet::V4(net)) = question.name().parse_arpa_name() else {
        panic!("INVARIANT: a PTR answer for a name that is no IPv4 address");
    };
    assert!(
        net.prefix_len() == 32 && matches!(net.addr().octets(), [100, 72, 0, 2 | 3]),
        "INVARIANT: a PTR answer for {net}, not a known address"
    );
    let ptrs: Vec<String> = answer
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::PTR(p) => p.0.to_ascii(),
            other => panic!("INVARIANT: only PTR records in a PTR answer, got {other:?}"),
        })
        .collect();
    if !answer.metadata.truncation {
        assert_eq!(ptrs, vec!["web.".to_string()], "INVARIANT: PTR of {net}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 4 != 0 {
        for (message, answer) in fuzz_tcp_stream(rest) {
            check(&message, answer, false, false);
        }
        return;
    }
    let udp = mode & 1 == 0;
    let stranger = mode & 2 != 0;
    let answer = fuzz_one(rest, udp, stranger);
    check(rest, answer, udp, stranger);
});
