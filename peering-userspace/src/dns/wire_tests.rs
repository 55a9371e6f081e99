use super::*;
use crate::control::view::{PeeringView, RegionView, VpcView};
use hickory_proto::op::Query;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// us-east-1, VPC 1 (10.1/16) peered with 10.5/16 in us-west-2, whose
/// owner allows DNS.
fn table() -> DnsTable {
    DnsTable::new(&RegionView {
        revision: 1,
        region: "us-east-1".into(),
        security_groups: vec![],
        interfaces: vec![],
        vpcs: vec![VpcView {
            vpc_id: "vpc-1".into(),
            dp_id: 1,
            cidrs: vec!["10.1.0.0/16".parse().unwrap()],
            default_group_dp_id: 0,
        }],
        subnets: vec![],
        routes: vec![],
        peerings: vec![PeeringView {
            pcx_id: "pcx-1".into(),
            dp_id: 9,
            local_vpc_dp_id: 1,
            remote_region: "us-west-2".into(),
            remote_vpc_cidrs: vec!["10.5.0.0/16".parse().unwrap()],
            local_vpc_cidrs: vec![],
            remote_allows_dns: true,
        }],
    })
}

fn query(id: u16, name: &str, t: RecordType) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m
}

fn ask(bytes: &[u8]) -> (Message, Kind) {
    match respond(&table(), ip("10.1.0.10"), ip("10.1.0.2"), bytes) {
        Outcome::Reply(r, kind) => (Message::from_vec(&r).expect("a valid response"), kind),
        Outcome::Drop(d) => panic!("dropped: {d:?}"),
    }
}

fn answers(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

#[test]
fn an_own_name_is_answered_with_the_id_and_the_name_as_asked() {
    let q = query(0x1234, "IP-10-1-0-10.Ec2.Internal.", RecordType::A);
    let (r, kind) = ask(&q.to_vec().unwrap());
    assert_eq!(kind, Kind::Answer);
    assert_eq!(r.metadata.id, 0x1234);
    assert_eq!(r.metadata.message_type, MessageType::Response);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.recursion_desired);
    assert!(!r.metadata.recursion_available, "no recursion");
    assert_eq!(r.queries, q.queries);
    assert_eq!(answers(&r), ["10.1.0.10"]);
    assert_eq!(r.answers[0].name.to_ascii(), "IP-10-1-0-10.Ec2.Internal.");
    assert_eq!(r.answers[0].ttl, TTL);
}

#[test]
fn a_peer_name_across_regions_and_its_reverse() {
    let q = query(7, "ip-10-5-0-9.us-west-2.compute.internal.", RecordType::A);
    let (r, _) = ask(&q.to_vec().unwrap());
    assert_eq!(answers(&r), ["10.5.0.9"]);
    let q = query(8, "9.0.5.10.in-addr.arpa.", RecordType::PTR);
    let (r, kind) = ask(&q.to_vec().unwrap());
    assert_eq!(kind, Kind::Answer);
    assert_eq!(answers(&r), ["ip-10-5-0-9.us-west-2.compute.internal."]);
}

#[test]
fn nodata_nxdomain_and_refused() {
    let q = query(1, "ip-10-1-0-10.ec2.internal.", RecordType::AAAA);
    let (r, kind) = ask(&q.to_vec().unwrap());
    assert_eq!(
        (kind, r.metadata.response_code),
        (Kind::Answer, ResponseCode::NoError)
    );
    assert!(r.answers.is_empty());
    let q = query(2, "ip-10-2-0-10.ec2.internal.", RecordType::A);
    let (r, kind) = ask(&q.to_vec().unwrap());
    assert_eq!(
        (kind, r.metadata.response_code),
        (Kind::NxDomain, ResponseCode::NXDomain)
    );
    assert!(r.answers.is_empty());
    let q = query(3, "example.com.", RecordType::A);
    let (r, kind) = ask(&q.to_vec().unwrap());
    assert_eq!(
        (kind, r.metadata.response_code),
        (Kind::Refused, ResponseCode::Refused)
    );
    let mut q = query(4, "ip-10-1-0-10.ec2.internal.", RecordType::A);
    q.queries[0].set_query_class(DNSClass::CH);
    let (_, kind) = ask(&q.to_vec().unwrap());
    assert_eq!(kind, Kind::Refused, "only class IN");
}

#[test]
fn edns_is_answered_with_edns() {
    let mut q = query(5, "ip-10-1-0-10.ec2.internal.", RecordType::A);
    let mut e = Edns::new();
    e.set_max_payload(4096);
    q.set_edns(e);
    let (r, _) = ask(&q.to_vec().unwrap());
    assert_eq!(r.edns.map(|e| e.max_payload()), Some(MAX_MESSAGE as u16));
    let q = query(6, "ip-10-1-0-10.ec2.internal.", RecordType::A);
    let (r, _) = ask(&q.to_vec().unwrap());
    assert!(r.edns.is_none());
}

#[test]
fn malformed_queries_get_formerr_with_their_id() {
    let good = query(0xbeef, "ip-10-1-0-10.ec2.internal.", RecordType::A)
        .to_vec()
        .unwrap();
    // Cut inside the question.
    let (r, kind) = ask(&good[..good.len() - 3]);
    assert_eq!((kind, r.metadata.id), (Kind::FormErr, 0xbeef));
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    // Two questions, none, an answer record, a huge count.
    for (offset, value) in [(4, 2u16), (4, 0), (6, 1), (8, 1), (10, 2), (4, 0xffff)] {
        let mut b = good.clone();
        b[offset..offset + 2].copy_from_slice(&value.to_be_bytes());
        let (r, kind) = ask(&b);
        assert_eq!(
            (kind, r.metadata.id),
            (Kind::FormErr, 0xbeef),
            "{offset} {value}"
        );
    }
}

#[test]
fn other_opcodes_are_not_implemented() {
    let mut q = query(9, "ip-10-1-0-10.ec2.internal.", RecordType::A);
    q.metadata.op_code = OpCode::Notify;
    let (r, kind) = ask(&q.to_vec().unwrap());
    assert_eq!(
        (kind, r.metadata.response_code),
        (Kind::NotImp, ResponseCode::NotImp)
    );
}

#[test]
fn short_oversize_and_responses_are_dropped() {
    let t = table();
    let (src, dst) = (ip("10.1.0.10"), ip("10.1.0.2"));
    assert_eq!(respond(&t, src, dst, &[0; 11]), Outcome::Drop(Drop::Short));
    assert_eq!(respond(&t, src, dst, &[]), Outcome::Drop(Drop::Short));
    let big = vec![0u8; MAX_MESSAGE + 1];
    assert_eq!(respond(&t, src, dst, &big), Outcome::Drop(Drop::Oversize));
    let mut r = query(1, "ip-10-1-0-10.ec2.internal.", RecordType::A);
    r.metadata.message_type = MessageType::Response;
    assert_eq!(
        respond(&t, src, dst, &r.to_vec().unwrap()),
        Outcome::Drop(Drop::NotQuery)
    );
}

/// Random bytes and random corruptions of a valid query: every outcome is
/// a drop or a response that parses, and none panics.
#[test]
fn random_and_corrupted_messages_never_panic() {
    let t = table();
    let (src, dst) = (ip("10.1.0.10"), ip("10.1.0.2"));
    let good = query(1, "ip-10-1-0-10.ec2.internal.", RecordType::A)
        .to_vec()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(12);
    let mut replies = 0;
    for i in 0..20_000 {
        let b: Vec<u8> = if i % 2 == 0 {
            let len = rng.random_range(0..200);
            (0..len).map(|_| rng.random()).collect()
        } else {
            let mut b = good.clone();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..b.len());
                b[at] = rng.random();
            }
            b
        };
        if let Outcome::Reply(r, _) = respond(&t, src, dst, &b) {
            Message::from_vec(&r).expect("every response parses");
            assert!(r.len() <= MAX_MESSAGE);
            replies += 1;
        }
    }
    assert!(replies > 1000, "corrupted queries were answered: {replies}");
}
