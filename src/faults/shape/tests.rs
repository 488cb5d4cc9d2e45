//! The engine alone, with a made-up clock.

use super::*;

const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const MS: Duration = Duration::from_millis(1);

fn set(faults: Vec<Fault>, now: Instant) -> FaultSet {
    FaultSet {
        seed: 7,
        faults: faults
            .into_iter()
            .map(|f| Installed {
                fault: Rc::new(f),
                since: now,
            })
            .collect(),
        generation: 1,
    }
}

fn stream(kind: Kind, now: Instant) -> Shaper {
    let s = set(vec![Fault::new(kind, Direction::ToClient)], now);
    Shaper::new(&s, Direction::ToClient, false, PEER, 1, now)
}

/// Every piece with the time it goes, relative to `t0`.
fn drain(s: &mut Shaper, t0: Instant) -> Vec<(Duration, Vec<u8>)> {
    s.take_all().map(|(t, b)| (t - t0, b)).collect()
}

#[test]
fn latency_holds_each_chunk_and_keeps_the_order() {
    let t0 = Instant::now();
    let mut s = stream(
        Kind::Latency {
            latency: 100 * MS,
            jitter: 50 * MS,
        },
        t0,
    );
    for i in 0..20u8 {
        assert_eq!(s.push(t0 + MS * u32::from(i), &[i]), None);
    }
    assert_eq!(s.held(), 20);
    assert_eq!(
        s.pop_due(t0 + 49 * MS),
        None,
        "nothing before latency - jitter"
    );
    let got = drain(&mut s, t0);
    let bytes: Vec<u8> = got.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(
        bytes,
        (0..20).collect::<Vec<u8>>(),
        "a stream keeps its order"
    );
    assert!(got.windows(2).all(|w| w[0].0 <= w[1].0));
    assert!(got.iter().all(|(t, _)| *t >= 50 * MS && *t <= 170 * MS));
}

#[test]
fn bandwidth_spreads_bytes_at_the_rate() {
    let t0 = Instant::now();
    let mut s = stream(Kind::Bandwidth { rate: 1000 }, t0);
    s.push(t0, &[0; 1000]);
    let got = drain(&mut s, t0);
    assert_eq!(got.len(), 10, "slices of a tenth of a second");
    assert_eq!(got.last().unwrap().0, Duration::from_secs(1));
}

#[test]
fn slicer_cuts_a_chunk_into_small_pieces_with_pauses() {
    let t0 = Instant::now();
    let mut s = stream(
        Kind::Slicer {
            average_size: 10,
            size_variation: 5,
            delay: 2 * MS,
        },
        t0,
    );
    let data: Vec<u8> = (0..200).map(|i| i as u8).collect();
    s.push(t0, &data);
    let got = drain(&mut s, t0);
    assert!(got.len() >= 13, "{} pieces", got.len());
    assert!(got.iter().all(|(_, b)| (1..=15).contains(&b.len())));
    let joined: Vec<u8> = got.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(joined, data);
    assert_eq!(got[3].0, 6 * MS);
}

#[test]
fn limit_data_passes_n_bytes_then_closes() {
    let t0 = Instant::now();
    let mut s = stream(Kind::LimitData { bytes: 10 }, t0);
    assert_eq!(s.push(t0, b"0123456"), None);
    assert_eq!(s.push(t0, b"789abc"), Some(Fate::Close));
    let joined: Vec<u8> = drain(&mut s, t0).into_iter().flat_map(|(_, b)| b).collect();
    assert_eq!(joined, b"0123456789");
}

#[test]
fn reset_peer_resets_after_its_timeout_from_the_first_data() {
    let t0 = Instant::now();
    let mut s = stream(
        Kind::ResetPeer {
            timeout: 50 * MS,
            bytes: None,
        },
        t0,
    );
    assert_eq!(s.push(t0 + 10 * MS, b"x"), None);
    assert_eq!(s.next_deadline(), Some(t0 + 10 * MS));
    assert_eq!(s.pop_due(t0 + 10 * MS), Some(b"x".to_vec()));
    assert_eq!(s.next_deadline(), Some(t0 + 60 * MS));
    assert_eq!(s.fate_due(t0 + 59 * MS), None);
    assert_eq!(s.fate_due(t0 + 60 * MS), Some(Fate::Reset));
    let mut now = stream(
        Kind::ResetPeer {
            timeout: Duration::ZERO,
            bytes: None,
        },
        t0,
    );
    assert_eq!(now.push(t0, b"dropped"), Some(Fate::Reset));
    assert_eq!(now.held(), 0);
}

#[test]
fn timeout_drops_everything_and_closes_when_its_time_comes() {
    let t0 = Instant::now();
    let mut s = stream(Kind::Timeout { timeout: 100 * MS }, t0);
    assert_eq!(s.push(t0, b"lost"), None);
    assert_eq!(s.held(), 0);
    assert_eq!(s.next_deadline(), Some(t0 + 100 * MS));
    assert_eq!(s.fate_due(t0 + 100 * MS), Some(Fate::Close));
}

#[test]
fn corrupt_changes_bytes_at_seeded_positions_the_same_way_twice() {
    let t0 = Instant::now();
    let run = || {
        let mut s = stream(Kind::Corrupt { probability: 0.1 }, t0);
        s.push(t0, &[0u8; 1000]);
        drain(&mut s, t0).remove(0).1
    };
    let a = run();
    assert_eq!(a, run());
    let changed = a.iter().filter(|b| **b != 0).count();
    assert!((50..150).contains(&changed), "{changed} of 1000");
}

#[test]
fn datagram_faults_are_the_same_for_the_same_seed_and_reorder_lets_others_overtake() {
    let t0 = Instant::now();
    let run = |seed: u64| {
        let mut faults = set(
            vec![
                Fault::new(Kind::Loss { probability: 0.2 }, Direction::ToClient),
                Fault::new(Kind::Duplicate { probability: 0.2 }, Direction::ToClient),
                Fault::new(
                    Kind::Reorder {
                        probability: 0.2,
                        delay: 10 * MS,
                    },
                    Direction::ToClient,
                ),
            ],
            t0,
        );
        faults.seed = seed;
        let mut s = Shaper::new(&faults, Direction::ToClient, true, PEER, 1, t0);
        for i in 0..50u8 {
            s.push(t0 + MS * u32::from(i), &[i]);
        }
        drain(&mut s, t0)
            .into_iter()
            .map(|(_, b)| b[0])
            .collect::<Vec<u8>>()
    };
    let a = run(7);
    assert_eq!(a, run(7));
    assert_ne!(a, run(8));
    assert!(a.windows(2).any(|w| w[0] > w[1]), "reordered: {a:?}");
    assert!(a.windows(2).any(|w| w[0] == w[1]), "duplicated: {a:?}");
    assert!((0..50u8).any(|i| !a.contains(&i)), "lost: {a:?}");
}

#[test]
fn selectors_pick_sessions_messages_and_a_time_window() {
    let t0 = Instant::now();
    let mut f = Fault::new(
        Kind::Timeout {
            timeout: Duration::ZERO,
        },
        Direction::ToClient,
    );
    f.sessions = Some(crate::faults::Counts { first: 2, last: 2 });
    f.messages = Some(crate::faults::Counts { first: 2, last: 3 });
    f.after = 10 * MS;
    f.lasts = Some(100 * MS);
    let faults = set(vec![f], t0);
    let mut first = Shaper::new(&faults, Direction::ToClient, false, PEER, 1, t0);
    assert!(!first.is_active(), "the first session is not selected");
    let mut s = Shaper::new(&faults, Direction::ToClient, false, PEER, 2, t0);
    let t = t0 + 20 * MS;
    for m in [b"1", b"2", b"3", b"4"] {
        s.push(t, m);
    }
    let got: Vec<u8> = drain(&mut s, t0).into_iter().flat_map(|(_, b)| b).collect();
    assert_eq!(got, b"14", "messages 2 and 3 dropped");
    s.push(t0 + 5 * MS, b"early");
    s.push(t0 + 110 * MS, b"late");
    let got: Vec<u8> = drain(&mut s, t0).into_iter().flat_map(|(_, b)| b).collect();
    assert_eq!(got, b"earlylate", "outside the window");
    first.push(t, b"x");
    assert_eq!(first.held(), 1);
}
