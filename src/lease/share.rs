//! The fair share of a connector's partitions, decided by each member on its own from what the
//! claims store shows: with N live members and P partitions, the members (in the order of
//! their ids) hold P / N each and the first P % N one more, so holdings differ by at most one.
//!
//! Each member only ever moves its own claims: one over its share hands back its surplus (after
//! draining it), one under its share takes partitions nobody holds (never expired, released, or
//! whose holder stopped renewing). That makes a rebalance cooperative and minimal, as Kafka's
//! incremental rebalancing is: a member joining takes about its share from the others, a member
//! leaving leaves only its own to take, and while membership does not change nothing moves.

use std::collections::BTreeSet;

/// One row of the claims store, as a member reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRow {
    pub partition: u32,
    pub holder: String,
    pub epoch: i64,
    /// Renewed in time (not expired, not released).
    pub live: bool,
}

/// What the store shows of a connector's claims at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// The members whose heartbeat is live, this one included.
    pub members: Vec<String>,
    pub claims: Vec<ClaimRow>,
}

/// What a member does next with its claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It holds its share (or nothing it may take is free): keep going.
    Steady,
    /// It holds more than its share: drain and hand back these.
    Release(Vec<u32>),
    /// It holds less than its share: try to take these (free now).
    Take(Vec<u32>),
}

/// How many of `partitions` partitions `me` should hold among the live `members`.
pub fn fair_share(members: &[String], me: &str, partitions: u32) -> u32 {
    let mut sorted: Vec<&str> = members.iter().map(String::as_str).collect();
    if !sorted.contains(&me) {
        sorted.push(me);
    }
    sorted.sort_unstable();
    sorted.dedup();
    let n = sorted.len() as u32;
    let rank = sorted.iter().position(|m| *m == me).expect("added above") as u32;
    partitions / n + u32::from(rank < partitions % n)
}

/// What `me`, holding `held` (in the order it took them, oldest first), does next given `view`.
pub fn decide(view: &View, me: &str, partitions: u32, held: &[u32]) -> Decision {
    let share = fair_share(&view.members, me, partitions) as usize;
    if held.len() > share {
        // The partitions taken last go back: a member that took more than its share while it
        // saw fewer members (one whose heartbeat was late) hands back exactly those, and the
        // partitions it had held longest stay where their readers' caches and connections are.
        let mut surplus = held[share..].to_vec();
        surplus.sort_unstable();
        return Decision::Release(surplus);
    }
    if held.len() == share {
        return Decision::Steady;
    }
    let held: BTreeSet<u32> = held.iter().copied().collect();
    let taken: BTreeSet<u32> = view.claims.iter().filter(|c| c.live && c.holder != me).map(|c| c.partition).collect();
    let mut free: Vec<u32> = (0..partitions).filter(|p| !held.contains(p) && !taken.contains(p)).collect();
    // Members under their share try the free partitions in different orders, so two of them
    // rarely race for the same one.
    free.sort_by_key(|p| std::cmp::Reverse(score(me, *p)));
    free.truncate(share - held.len());
    if free.is_empty() { Decision::Steady } else { Decision::Take(free) }
}

/// A member's preference for a partition (rendezvous hashing's weight).
fn score(member: &str, partition: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in member.bytes().chain(partition.to_le_bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn members(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn shares_differ_by_at_most_one_and_add_up() {
        for n in 1..=7 {
            let names: Vec<String> = (0..n).map(|i| format!("g{i}")).collect();
            for p in [1, 2, 7, 16, 64] {
                let shares: Vec<u32> = names.iter().map(|m| fair_share(&names, m, p)).collect();
                assert_eq!(shares.iter().sum::<u32>(), p, "n={n} p={p}");
                assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1, "n={n} p={p}: {shares:?}");
            }
        }
    }

    /// Plays the members' decisions round by round until nobody moves; returns the holdings
    /// and how many partitions changed hands.
    fn settle(names: &[String], mut holdings: BTreeMap<String, BTreeSet<u32>>, partitions: u32) -> (BTreeMap<String, BTreeSet<u32>>, usize) {
        let mut moved = 0;
        for _ in 0..50 {
            let mut changed = false;
            for me in names {
                let claims = holdings
                    .iter()
                    .flat_map(|(holder, held)| held.iter().map(|p| ClaimRow { partition: *p, holder: holder.clone(), epoch: 1, live: true }))
                    .collect();
                let view = View { members: names.to_vec(), claims };
                let held: Vec<u32> = holdings.entry(me.clone()).or_default().iter().copied().collect();
                match decide(&view, me, partitions, &held) {
                    Decision::Steady => {}
                    Decision::Release(gone) => {
                        changed = true;
                        holdings.get_mut(me).unwrap().retain(|p| !gone.contains(p));
                    }
                    Decision::Take(new) => {
                        changed = true;
                        moved += new.len();
                        holdings.get_mut(me).unwrap().extend(new);
                    }
                }
            }
            if !changed {
                holdings.retain(|m, _| names.contains(m));
                return (holdings, moved);
            }
        }
        panic!("no settling: {holdings:?}");
    }

    #[test]
    fn members_settle_on_a_balanced_split_and_a_change_moves_only_what_it_must() {
        let p = 16;
        let three = members(&["a", "b", "c"]);
        let (split, _) = settle(&three, BTreeMap::new(), p);
        let sizes: Vec<usize> = split.values().map(BTreeSet::len).collect();
        assert_eq!(sizes, vec![6, 5, 5]);
        let all: BTreeSet<u32> = split.values().flatten().copied().collect();
        assert_eq!(all.len(), 16, "every partition held once: {split:?}");

        // Settled means steady: another round changes nothing.
        let (again, moved) = settle(&three, split.clone(), p);
        assert_eq!((again, moved), (split.clone(), 0));

        // A fourth member joins: it takes its share (4), nothing else moves.
        let four = members(&["a", "b", "c", "d"]);
        let (joined, moved) = settle(&four, split.clone(), p);
        assert_eq!(joined.values().map(BTreeSet::len).collect::<Vec<_>>(), vec![4, 4, 4, 4]);
        assert_eq!(moved, 4, "{joined:?}");
        assert!(moved <= p.div_ceil(4) as usize);

        // b leaves: only its partitions move.
        let (left, moved) = settle(&members(&["a", "c", "d"]), { let mut h = joined.clone(); h.remove("b"); h }, p);
        assert_eq!(left.values().map(BTreeSet::len).collect::<Vec<_>>(), vec![6, 5, 5]);
        assert_eq!(moved, 4);
    }

    #[test]
    fn takes_only_free_partitions_and_its_own_expired_ones() {
        let view = View {
            members: members(&["a", "b"]),
            claims: vec![
                ClaimRow { partition: 0, holder: "b".into(), epoch: 3, live: true },
                ClaimRow { partition: 1, holder: "b".into(), epoch: 1, live: false },
                ClaimRow { partition: 2, holder: "a".into(), epoch: 2, live: true },
            ],
        };
        let Decision::Take(mut taken) = decide(&view, "a", 4, &[]) else { panic!() };
        taken.sort_unstable();
        // 0 is b's; 1 expired; 2 is a's own row from an earlier run (taken again, new epoch).
        assert_eq!(taken.len(), 2);
        assert!(!taken.contains(&0));
        assert_eq!(decide(&view, "a", 4, &[1, 2]), Decision::Steady);
        assert_eq!(decide(&view, "a", 4, &[1, 2, 3]), Decision::Release(vec![3]));
    }

    #[test]
    fn a_member_that_took_too_much_hands_back_what_it_took_last() {
        // a held 9, 4 and 12, then (b's heartbeat late) took 0 and 7: with b live again, its
        // share is 3 of 6 and 0 and 7 go back, not its highest partitions.
        let view = View { members: members(&["a", "b"]), claims: Vec::new() };
        assert_eq!(decide(&view, "a", 6, &[9, 4, 12, 7, 0]), Decision::Release(vec![0, 7]));
    }
}
