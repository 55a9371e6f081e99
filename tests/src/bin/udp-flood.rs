//! Sends a bounded flood of forged datagrams to a tunnel port, for the
//! flood lab test (run inside the lab's router namespace).
//!
//! ```text
//! udp-flood ADDR:PORT COUNT header|random [--epoch N] [--secs S]
//! ```
//!
//! `header`: tunnel-header-shaped datagrams (version 1, kind data, the
//! given epoch, a random claimed sender id and counter, random body), so
//! each one reaches the receiver's AEAD. `random`: uniformly random bytes
//! of random length. Sends COUNT datagrams spread evenly over S seconds
//! (default 3), and stops at S + 5 seconds whatever happened. Prints how
//! many were sent.

use std::{
    net::{SocketAddrV4, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

/// xorshift64*: a seeded generator for noise, not for secrets.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

struct Args {
    to: SocketAddrV4,
    count: u64,
    header: bool,
    epoch: u32,
    secs: f64,
}

fn parse() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let usage = "udp-flood ADDR:PORT COUNT header|random [--epoch N] [--secs S]";
    let to = it.next().context(usage)?.parse().context("ADDR:PORT")?;
    let count = it.next().context(usage)?.parse().context("COUNT")?;
    let header = match it.next().as_deref() {
        Some("header") => true,
        Some("random") => false,
        _ => bail!("{usage}"),
    };
    let (mut epoch, mut secs) = (1, 3.0);
    while let Some(flag) = it.next() {
        let value = it.next().context(usage)?;
        match flag.as_str() {
            "--epoch" => epoch = value.parse().context("--epoch")?,
            "--secs" => secs = value.parse().context("--secs")?,
            _ => bail!("{usage}"),
        }
    }
    Ok(Args {
        to,
        count,
        header,
        epoch,
        secs,
    })
}

fn main() -> Result<()> {
    let args = parse()?;
    let socket = UdpSocket::bind("0.0.0.0:0").context("binding a UDP socket")?;
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let mut buf = [0u8; 1400];
    let start = Instant::now();
    let budget = Duration::from_secs_f64(args.secs);
    let deadline = budget + Duration::from_secs(5);
    let mut sent = 0u64;
    for i in 0..args.count {
        // Pace: datagram i leaves no earlier than i/count of the budget.
        let due = budget.mul_f64(i as f64 / args.count as f64);
        while start.elapsed() < due {
            std::thread::sleep(Duration::from_micros(200));
        }
        if start.elapsed() > deadline {
            break;
        }
        let len = if args.header {
            64 + (noise.next() % 200) as usize
        } else {
            1 + (noise.next() % 1399) as usize
        };
        let d = &mut buf[..len];
        noise.fill(d);
        if args.header {
            d[..4].copy_from_slice(&[1, 1, 0, 0]);
            d[4..8].copy_from_slice(&args.epoch.to_be_bytes());
        }
        // A full socket buffer is not an error for a flood.
        if socket.send_to(d, args.to).is_ok() {
            sent += 1;
        }
    }
    println!("sent {sent}");
    Ok(())
}
