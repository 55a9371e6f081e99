//! Typed access to the dataplane maps. Keys are built here and only here,
//! so userspace and the XDP program cannot disagree on their layout.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::Path,
};

use super::fib::{FibKey, FibModel, FibWrite};
use super::route_slots::{RouteSlots, Slot};
use anyhow::{anyhow, bail, Context as _, Result};
use aya::{
    maps::{
        lpm_trie::Key, Array, DevMapHash, HashMap, LpmTrie, Map, MapData, MapError, PerCpuArray,
        PerCpuValues, XskMap,
    },
    util::nr_cpus,
    Ebpf,
};
use ipnet::Ipv4Net;
use peering_common::{
    maps as names, scoped_prefix_len, Counter, EgressPort, FibEntry, IfaceInfo, IfaceKey, NeighKey,
    NeighValue, RouteAction, RouteValue, ScopedAddr, Stat, UnderlayInfo, MAX_ROUTE_COUNTERS,
};

/// Every map of the object; all are pinned when running with a pin directory.
pub const NAMES: &[&str] = &[
    names::IFACES,
    names::VPC_CIDRS,
    names::ROUTES,
    names::SUBNETS,
    names::NEIGHBOURS,
    names::EGRESS,
    names::XSKS,
    names::STATS,
    names::ROUTE_STATS,
    names::UNDERLAY,
    names::RESOLVE,
    names::FIB,
    names::TUN_ENTRY,
    names::SG_ADDRS,
    names::SG_POLICIES,
    names::SG_RULE_STATS,
    names::SG_CONFIG,
    names::CONNTRACK,
];

/// The interface entry of a subnet of `vpc`, routed by `route_table`, on a
/// port: `gateway_ip` is the VPC router's address on it, `subnet` the
/// prefix its hosts' sources must lie in, `xsk_base` its first AF_XDP slot.
pub fn iface_info(
    vpc: u32,
    route_table: u32,
    gateway_ip: Ipv4Addr,
    subnet: Ipv4Net,
    xsk_base: u32,
) -> IfaceInfo {
    IfaceInfo {
        vpc_id: vpc,
        route_table,
        subnet: subnet.network().octets(),
        subnet_mask: subnet.netmask().octets(),
        gateway_ip: gateway_ip.octets(),
        xsk_base,
    }
}

/// Where a route sends matching packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteTarget {
    /// An intra-region peer VPC (by dataplane id).
    LocalPeer {
        peer_vpc: u32,
    },
    /// An inter-region peering (by dataplane id).
    RemotePeer {
        pcx: u32,
    },
    Blackhole,
}

impl RouteTarget {
    fn encode(self, counter: u32) -> RouteValue {
        let (action, target) = match self {
            Self::LocalPeer { peer_vpc } => (RouteAction::LocalPeer, peer_vpc),
            Self::RemotePeer { pcx } => (RouteAction::RemotePeer, pcx),
            Self::Blackhole => (RouteAction::Blackhole, 0),
        };
        RouteValue {
            action: action as u32,
            target,
            counter,
            _pad: 0,
        }
    }

    fn decode(v: &RouteValue) -> Option<Self> {
        Some(match RouteAction::from_u32(v.action)? {
            RouteAction::LocalPeer => Self::LocalPeer { peer_vpc: v.target },
            RouteAction::RemotePeer => Self::RemotePeer { pcx: v.target },
            RouteAction::Blackhole => Self::Blackhole,
        })
    }
}

/// Everything programmed in the maps, for display and reconciliation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub ifaces: Vec<(IfaceKey, IfaceInfo)>,
    pub vpc_cidrs: Vec<(u32, Ipv4Net)>,
    pub routes: Vec<(u32, Ipv4Net, RouteTarget, u32)>,
    pub subnets: Vec<(u32, Ipv4Net, EgressPort)>,
    pub neighbours: Vec<(u32, Ipv4Addr, [u8; 6])>,
}

pub struct Maps {
    ifaces: HashMap<MapData, IfaceKey, IfaceInfo>,
    vpc_cidrs: LpmTrie<MapData, ScopedAddr, u32>,
    routes: LpmTrie<MapData, ScopedAddr, RouteValue>,
    subnets: LpmTrie<MapData, ScopedAddr, EgressPort>,
    fib: LpmTrie<MapData, ScopedAddr, FibEntry>,
    neighbours: HashMap<MapData, NeighKey, NeighValue>,
    egress: DevMapHash<MapData>,
    xsks: XskMap<MapData>,
    stats: PerCpuArray<MapData, Counter>,
    route_stats: PerCpuArray<MapData, Counter>,
    underlay: HashMap<MapData, u32, UnderlayInfo>,
    tun_entry: Array<MapData, u32>,
    /// The counter slot of every route in `routes`, read from the map on
    /// the first route write and kept by this handle's writes since (and
    /// re-read from every [`Maps::adopt_snapshot`] snapshot).
    slots: Option<RouteSlots>,
    /// What the FIB is compiled from, read from the record maps (ROUTES,
    /// SUBNETS, VPC_CIDRS) on the first write, the FIB repaired to match
    /// it then, and kept by this handle's writes since. Dropped (to be
    /// read again) when a write fails half-way.
    model: Option<FibModel>,
    /// Whether each port a subnet named is a veth (its FIB entries then
    /// carry `FIB_F_PEER_REDIRECT`), asked of the kernel once per port.
    veth: BTreeMap<u32, bool>,
    /// A route went uncounted (all slots taken): said once.
    warned_uncounted: bool,
    /// Security groups and connection tracking (`sg_maps.rs`).
    pub sg: super::SgMaps,
}

fn scoped_key(scope: u32, net: Ipv4Net) -> Key<ScopedAddr> {
    let net = net.trunc();
    Key::new(
        scoped_prefix_len(net.prefix_len()),
        ScopedAddr::new(scope, net.addr().octets()),
    )
}

fn same_key(a: &Key<ScopedAddr>, b: &Key<ScopedAddr>) -> bool {
    a.prefix_len() == b.prefix_len() && a.data() == b.data()
}

fn unscope(key: &Key<ScopedAddr>) -> Result<(u32, Ipv4Net)> {
    let d = key.data();
    let len = key.prefix_len().checked_sub(32).filter(|l| *l <= 32);
    let len = len.ok_or_else(|| anyhow!("corrupt LPM key: prefix {}", key.prefix_len()))?;
    let net = Ipv4Net::new(Ipv4Addr::from(d.addr), len as u8)?;
    Ok((u32::from_be(d.scope_be), net))
}

fn typed<T>(map: Option<Map>, name: &str) -> Result<T>
where
    T: TryFrom<Map, Error = MapError>,
{
    let map = map.ok_or_else(|| anyhow!("the object has no map {name}"))?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

impl Maps {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        Self::build(|name| Ok(ebpf.take_map(name)))
    }

    pub(super) fn from_pins(dir: &Path) -> Result<Self> {
        Self::build(|name| {
            let path = dir.join(name);
            let data = MapData::from_pin(&path).map_err(|e| {
                anyhow!(
                    "{} is not pinned ({e}): is the dataplane loaded (peering-agent attach)?",
                    path.display()
                )
            })?;
            Ok(Some(Map::from_map_data(data)?))
        })
    }

    fn build(mut get: impl FnMut(&str) -> Result<Option<Map>>) -> Result<Self> {
        Ok(Self {
            ifaces: typed(get(names::IFACES)?, names::IFACES)?,
            vpc_cidrs: typed(get(names::VPC_CIDRS)?, names::VPC_CIDRS)?,
            routes: typed(get(names::ROUTES)?, names::ROUTES)?,
            subnets: typed(get(names::SUBNETS)?, names::SUBNETS)?,
            fib: typed(get(names::FIB)?, names::FIB)?,
            neighbours: typed(get(names::NEIGHBOURS)?, names::NEIGHBOURS)?,
            egress: typed(get(names::EGRESS)?, names::EGRESS)?,
            xsks: typed(get(names::XSKS)?, names::XSKS)?,
            stats: typed(get(names::STATS)?, names::STATS)?,
            route_stats: typed(get(names::ROUTE_STATS)?, names::ROUTE_STATS)?,
            underlay: typed(get(names::UNDERLAY)?, names::UNDERLAY)?,
            tun_entry: typed(get(names::TUN_ENTRY)?, names::TUN_ENTRY)?,
            slots: None,
            model: None,
            veth: BTreeMap::new(),
            warned_uncounted: false,
            sg: super::SgMaps {
                addrs: typed(get(names::SG_ADDRS)?, names::SG_ADDRS)?,
                policies: typed(get(names::SG_POLICIES)?, names::SG_POLICIES)?,
                rule_stats: typed(get(names::SG_RULE_STATS)?, names::SG_RULE_STATS)?,
                config: typed(get(names::SG_CONFIG)?, names::SG_CONFIG)?,
                conntrack: typed(get(names::CONNTRACK)?, names::CONNTRACK)?,
                slots: BTreeMap::new(),
            },
        })
    }

    /// Makes `ifindex` an underlay interface whose tunnel endpoint is
    /// `endpoint`: the underlay program hands datagrams to it to the
    /// tunnel's AF_XDP sockets.
    pub fn set_underlay(&mut self, ifindex: u32, endpoint: std::net::SocketAddrV4) -> Result<()> {
        let info = UnderlayInfo {
            addr: endpoint.ip().octets(),
            port: endpoint.port().to_be_bytes(),
            _pad: 0,
        };
        Ok(self.underlay.insert(ifindex, info, 0)?)
    }

    /// Stops the underlay program from taking datagrams on `ifindex`
    /// (they go to the kernel and the tunnel's UDP socket).
    pub fn remove_underlay(&mut self, ifindex: u32) -> Result<()> {
        if self.underlay.get(&ifindex, 0).is_err() {
            return Ok(());
        }
        Ok(self.underlay.remove(&ifindex)?)
    }

    /// Says where the TC program sends inter-region packets: the sending
    /// end of the tunnel entry veth (0: nowhere, they are dropped).
    pub fn set_tun_entry(&mut self, ifindex: u32) -> Result<()> {
        Ok(self.tun_entry.set(0, ifindex, 0)?)
    }

    /// The entry veth's sending end as the map holds it (0: not set up).
    pub fn tun_entry(&self) -> Result<u32> {
        Ok(self.tun_entry.get(&0, 0)?)
    }

    /// Binds an interface (and VLAN, 0 = untagged) to a subnet of `vpc`
    /// routed by `route_table`. `gateway_ip` is the VPC router's address on
    /// that subnet.
    pub fn set_iface(&mut self, ifindex: u32, vlan: u16, info: IfaceInfo) -> Result<()> {
        if vlan > 4094 {
            bail!("VLAN id {vlan} is out of range (0 for untagged, 1-4094)");
        }
        let key = IfaceKey::new(ifindex, vlan);
        Ok(self.ifaces.insert(key, info, 0)?)
    }

    pub fn remove_iface(&mut self, ifindex: u32, vlan: u16) -> Result<()> {
        let key = IfaceKey::new(ifindex, vlan);
        Ok(self.ifaces.remove(&key)?)
    }

    pub fn add_vpc_cidr(&mut self, vpc: u32, cidr: Ipv4Net) -> Result<()> {
        self.fib_model()?;
        self.vpc_cidrs.insert(&scoped_key(vpc, cidr), 1, 0)?;
        self.compile(|m| m.add_block(vpc, cidr))
    }

    /// Removes a VPC block; refused while a subnet of the VPC lies in it,
    /// since the XDP program trusts subnets to be inside their VPC.
    pub fn remove_vpc_cidr(&mut self, vpc: u32, cidr: Ipv4Net) -> Result<()> {
        for r in self.subnets.keys() {
            let (v, net) = unscope(&r?)?;
            if v == vpc && cidr.contains(&net) {
                bail!("VPC {vpc} block {cidr} still holds subnet {net}");
            }
        }
        self.fib_model()?;
        self.vpc_cidrs.remove(&scoped_key(vpc, cidr))?;
        self.compile(|m| m.remove_block(vpc, cidr))
    }

    /// True when `net` lies entirely inside one of `vpc`'s blocks: an LPM
    /// lookup with the subnet's own prefix length only matches blocks of
    /// that length or shorter that contain it.
    fn vpc_contains(&self, vpc: u32, net: Ipv4Net) -> bool {
        self.vpc_cidrs.get(&scoped_key(vpc, net), 0).is_ok()
    }

    /// Installs or replaces a route. A replaced route keeps its counters; a
    /// new one gets a zeroed counter slot, or none (slot 0, uncounted) when
    /// all [`MAX_ROUTE_COUNTERS`] are taken. Returns the slot. Costs one
    /// map update (two for a new slot), whatever the number of routes.
    pub fn set_route(&mut self, table: u32, dst: Ipv4Net, target: RouteTarget) -> Result<u32> {
        let route = (table, dst.trunc());
        let slot = self.route_slots()?.slot_for(&route);
        match slot {
            Slot::Fresh(n) => {
                let zeros = PerCpuValues::try_from(vec![Counter::default(); ncpus()?])?;
                self.route_stats.set(n, zeros, 0)?;
            }
            Slot::Uncounted if !self.warned_uncounted => {
                self.warned_uncounted = true;
                log::warn!(
                    "all {} route counters are in use: further routes forward uncounted",
                    MAX_ROUTE_COUNTERS - 1
                );
            }
            _ => {}
        }
        self.fib_model()?;
        let key = scoped_key(table, dst);
        let written = self.routes.insert(&key, target.encode(slot.number()), 0);
        if let Err(e) = written {
            // What the map holds is unknown now: read it again next time.
            self.slots = None;
            self.model = None;
            return Err(e.into());
        }
        self.route_slots()?.installed(route, slot);
        let n = slot.number();
        self.compile(|m| m.set_route(table, dst, target, n))?;
        Ok(n)
    }

    pub fn remove_route(&mut self, table: u32, dst: Ipv4Net) -> Result<()> {
        self.fib_model()?;
        let removed = self.routes.remove(&scoped_key(table, dst));
        if let Some(slots) = self.slots.as_mut() {
            match &removed {
                Ok(()) => slots.removed(&(table, dst.trunc())),
                // Absent, or unknown: read the map again next time.
                Err(_) => self.slots = None,
            }
        }
        removed?;
        self.compile(|m| m.remove_route(table, dst))
    }

    /// The slot index, read from the route map if this handle has none.
    fn route_slots(&mut self) -> Result<&mut RouteSlots> {
        if self.slots.is_none() {
            let mut routes = Vec::new();
            for r in self.routes.iter() {
                let (k, v) = r?;
                routes.push((unscope(&k)?, v.counter));
            }
            self.slots = Some(RouteSlots::new(MAX_ROUTE_COUNTERS, routes));
        }
        Ok(self.slots.as_mut().expect("filled above"))
    }

    /// Takes the routes' slots and what the FIB is compiled from from
    /// `snapshot` (a dump of these maps just made), so writes after a full
    /// reconciliation need no walk of their own and follow whatever changed
    /// behind this handle's back. The FIB is left as it is: the
    /// reconciliation's writes add what is missing, then
    /// [`Maps::repair_fib`] removes what is stale (make before break, even
    /// when a record map was recreated empty under running programs).
    pub fn adopt_snapshot(&mut self, snapshot: &Snapshot) {
        let routes = snapshot
            .routes
            .iter()
            .map(|(table, dst, _, slot)| ((*table, *dst), *slot));
        self.slots = Some(RouteSlots::new(MAX_ROUTE_COUNTERS, routes));
        self.model = None;
        let mut model = FibModel::load(
            snapshot.routes.iter().copied(),
            snapshot.subnets.iter().copied(),
            snapshot.vpc_cidrs.iter().copied(),
        );
        // Not written here: the repair that follows writes the flags.
        let _ = model.set_peer_redirect(self.veth_ports(&snapshot.subnets));
        self.model = Some(model);
    }

    /// The veths among the ports of `subnets`.
    fn veth_ports(&mut self, subnets: &[(u32, Ipv4Net, EgressPort)]) -> BTreeSet<u32> {
        subnets
            .iter()
            .map(|(_, _, p)| p.ifindex)
            .filter(|i| self.is_veth(*i))
            .collect()
    }

    /// Whether port `ifindex` is a veth (asked once; an interface that
    /// cannot be asked counts as not a veth).
    fn is_veth(&mut self, ifindex: u32) -> bool {
        *self.veth.entry(ifindex).or_insert_with(|| {
            let driver = crate::sys::ifname(ifindex).and_then(|n| crate::sys::driver(&n));
            super::port_path::is_veth(driver.ok().as_deref())
        })
    }

    /// Makes the FIB hold exactly what the compile state says: one dump of
    /// the FIB, then the missing or changed entries, then the stale ones.
    pub fn repair_fib(&mut self) -> Result<()> {
        let have = self.fib()?;
        let writes = self.fib_model()?.repair(&have);
        self.write_fib(&writes)
    }

    /// The compile state, read from the record maps (and the FIB repaired
    /// to match) if this handle has none.
    fn fib_model(&mut self) -> Result<&mut FibModel> {
        if self.model.is_none() {
            let s = self.snapshot()?;
            let mut model = FibModel::load(
                s.routes.iter().copied(),
                s.subnets.iter().copied(),
                s.vpc_cidrs.iter().copied(),
            );
            let _ = model.set_peer_redirect(self.veth_ports(&s.subnets));
            let writes = model.repair(&self.fib()?);
            self.model = Some(model);
            self.write_fib(&writes)?;
        }
        Ok(self.model.as_mut().expect("filled above"))
    }

    /// Applies `change` to the compile state and its writes to the FIB.
    fn compile(&mut self, change: impl FnOnce(&mut FibModel) -> Vec<FibWrite>) -> Result<()> {
        let writes = change(self.fib_model()?);
        self.write_fib(&writes)
    }

    fn write_fib(&mut self, writes: &[FibWrite]) -> Result<()> {
        for w in writes {
            let done = match w {
                FibWrite::Set((t, p), e) => self.fib.insert(&scoped_key(*t, *p), *e, 0),
                FibWrite::Del((t, p)) => self.fib.remove(&scoped_key(*t, *p)),
            };
            if let Err(e) = done {
                // The FIB is between two states: compile and repair it
                // afresh on the next write.
                self.model = None;
                return Err(anyhow!(e).context("writing the FIB"));
            }
        }
        Ok(())
    }

    /// Every FIB entry, by (route table, prefix).
    pub fn fib(&self) -> Result<BTreeMap<FibKey, FibEntry>> {
        let mut out = BTreeMap::new();
        for r in self.fib.iter() {
            let (k, e) = r?;
            out.insert(unscope(&k)?, e);
        }
        Ok(out)
    }

    /// The route installed for exactly `dst` in `table`.
    fn exact_route(&self, table: u32, dst: Ipv4Net) -> Result<Option<RouteValue>> {
        let key = scoped_key(table, dst);
        for r in self.routes.iter() {
            let (k, v) = r?;
            if same_key(&k, &key) {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Makes the hosts of `cidr` in `vpc` reachable through `port`, and lets
    /// XDP redirect to that port. The subnet must lie inside one of the
    /// VPC's blocks (add the block first): the XDP program relies on it.
    pub fn set_subnet(&mut self, vpc: u32, cidr: Ipv4Net, port: EgressPort) -> Result<()> {
        if !self.vpc_contains(vpc, cidr) {
            bail!("subnet {cidr} is not inside a block of VPC {vpc}");
        }
        self.fib_model()?;
        self.egress.insert(port.ifindex, port.ifindex, None, 0)?;
        self.subnets.insert(&scoped_key(vpc, cidr), port, 0)?;
        if self.is_veth(port.ifindex) {
            let mut ports = self.fib_model()?.peer_redirect().clone();
            if ports.insert(port.ifindex) {
                self.compile(|m| m.set_peer_redirect(ports))?;
            }
        }
        self.compile(|m| m.set_subnet(vpc, cidr, port))
    }

    pub fn remove_subnet(&mut self, vpc: u32, cidr: Ipv4Net) -> Result<()> {
        self.fib_model()?;
        self.subnets.remove(&scoped_key(vpc, cidr))?;
        self.compile(|m| m.remove_subnet(vpc, cidr))
    }

    /// Removes a port from the redirect map (once no subnet uses it).
    pub fn remove_egress(&mut self, ifindex: u32) -> Result<()> {
        Ok(self.egress.remove(ifindex)?)
    }

    pub fn set_neighbour(&mut self, ifindex: u32, addr: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
        let key = NeighKey {
            ifindex,
            addr: addr.octets(),
        };
        Ok(self
            .neighbours
            .insert(key, NeighValue { mac, _pad: 0 }, 0)?)
    }

    pub fn remove_neighbour(&mut self, ifindex: u32, addr: Ipv4Addr) -> Result<()> {
        let key = NeighKey {
            ifindex,
            addr: addr.octets(),
        };
        Ok(self.neighbours.remove(&key)?)
    }

    /// The AF_XDP socket map of the encapsulation path.
    pub fn xsks_mut(&mut self) -> &mut XskMap<MapData> {
        &mut self.xsks
    }

    /// A second handle on the pinned AF_XDP socket map, for the tunnel
    /// thread (which owns the sockets the map points at).
    pub fn pinned_xsks(dir: &Path) -> Result<XskMap<MapData>> {
        let path = dir.join(names::XSKS);
        let data = MapData::from_pin(&path)
            .with_context(|| format!("opening pinned map {}", path.display()))?;
        typed(Some(Map::from_map_data(data)?), names::XSKS)
    }

    /// Verdict counters summed over CPUs, in [`Stat`] order.
    pub fn stats(&self) -> Result<Vec<(Stat, Counter)>> {
        Stat::ALL
            .iter()
            .map(|s| Ok((*s, sum(&self.stats.get(&(*s as u32), 0)?))))
            .collect()
    }

    pub fn stat(&self, stat: Stat) -> Result<Counter> {
        Ok(sum(&self.stats.get(&(stat as u32), 0)?))
    }

    /// Counters of the route for `dst` in `table`, summed over CPUs.
    pub fn route_stats(&self, table: u32, dst: Ipv4Net) -> Result<Counter> {
        let v = self
            .exact_route(table, dst)?
            .with_context(|| format!("no route {dst} in table {table}"))?;
        Ok(sum(&self.route_stats.get(&v.counter, 0)?))
    }

    /// Reads every programmed entry.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let mut s = Snapshot::default();
        for r in self.ifaces.iter() {
            s.ifaces.push(r?);
        }
        for r in self.vpc_cidrs.keys() {
            s.vpc_cidrs.push(unscope(&r?)?);
        }
        for r in self.routes.iter() {
            let (k, v) = r?;
            let (table, dst) = unscope(&k)?;
            let target = RouteTarget::decode(&v)
                .ok_or_else(|| anyhow!("corrupt route action {}", v.action))?;
            s.routes.push((table, dst, target, v.counter));
        }
        for r in self.subnets.iter() {
            let (k, port) = r?;
            let (vpc, net) = unscope(&k)?;
            s.subnets.push((vpc, net, port));
        }
        for r in self.neighbours.iter() {
            let (k, v) = r?;
            s.neighbours
                .push((k.ifindex, Ipv4Addr::from(k.addr), v.mac));
        }
        s.ifaces.sort_by_key(|(k, _)| (k.ifindex, k.vlan));
        s.vpc_cidrs.sort();
        s.routes.sort_by_key(|r| (r.0, r.1));
        s.subnets.sort_by_key(|r| (r.0, r.1));
        s.neighbours.sort();
        Ok(s)
    }
}

fn ncpus() -> Result<usize> {
    nr_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))
}

fn sum(values: &PerCpuValues<Counter>) -> Counter {
    values.iter().fold(Counter::default(), |a, c| Counter {
        packets: a.packets + c.packets,
        bytes: a.bytes + c.bytes,
    })
}
