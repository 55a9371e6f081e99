//! Creating, raising and deleting veth pairs through rtnetlink: the
//! tunnel entry pair (see [`crate::dataplane::tun_entry`]).

use anyhow::{anyhow, Result};
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::{
    link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
    RouteNetlinkMessage,
};

use super::nexthop::Resolver;

fn named(name: &str, queues: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.into()));
    msg.attributes.push(LinkAttribute::NumTxQueues(queues));
    msg.attributes.push(LinkAttribute::NumRxQueues(queues));
    msg
}

impl Resolver {
    /// Creates the veth pair `name` / `peer`, each end with `queues`
    /// receive and transmit queues, both down. An existing `name` is an
    /// error (EEXIST): the caller decides whether it is the pair it wants.
    pub fn add_veth_pair(&mut self, name: &str, peer: &str, queues: u32) -> Result<()> {
        let mut msg = named(name, queues);
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(named(peer, queues)))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?
        .map_err(|e| anyhow!("RTM_NEWLINK veth {name}/{peer}: {e}"))?;
        Ok(())
    }

    /// Sets interface `ifindex` up.
    pub fn set_up(&mut self, ifindex: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)?
            .map_err(|e| anyhow!("RTM_SETLINK up on ifindex {ifindex}: {e}"))?;
        Ok(())
    }

    /// Deletes interface `ifindex` (a veth takes its peer along); one
    /// already gone is not an error.
    pub fn del_link(&mut self, ifindex: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        match self.request(RouteNetlinkMessage::DelLink(msg), NLM_F_ACK)? {
            Ok(_) => Ok(()),
            Err(e) if e.errno == libc::ENODEV => Ok(()),
            Err(e) => Err(anyhow!("RTM_DELLINK ifindex {ifindex}: {e}")),
        }
    }
}
