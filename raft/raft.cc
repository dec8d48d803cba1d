// The Raft core. Section order: construction and outputs, timers, roles,
// elections, replication (follower side, then leader side), commitment,
// proposals, reads and leases, leadership transfer, log.
//
// The lease argument this code enforces is docs/lease.md; each place that
// depends on it is marked "lease:".
#include "raft/raft.h"

#include <algorithm>
#include <utility>

#include "runtime/base/assert.h"

namespace nori::raft {

namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

// Heartbeat intervals without replication progress, with appends in flight,
// after which they are presumed lost and the follower is probed again.
constexpr uint32_t kStalledRoundsMax = 2;

Duration ns(int64_t v) {
  return Duration(v);
}

}  // namespace

template <typename F>
uint64_t Raft::quorum_of(uint64_t self_value, F&& value) const {
  if (simple_majority_ && peers_.size() < kVotersInline) {
    uint64_t buf[kVotersInline];
    size_t n = 0;
    buf[n++] = self_value;
    for (const Progress& p : peers_)
      buf[n++] = value(p);
    return detail::kth_largest(buf, n, n / 2 + 1);
  }
  return quorum_.quorum_value([&](NodeId id) -> uint64_t {
    if (id == id_) return self_value;
    for (const Progress& p : peers_) {
      if (p.id == id) return value(p);
    }
    return 0;
  });
}

// --- construction and outputs ----------------------------------------------------

base::Result<std::unique_ptr<Raft>> Raft::create(Config config, LogStorage& storage,
                                                 TimePoint now) {
  NORI_TRY(config.validate());
  return std::make_unique<Raft>(std::move(config), storage, now);
}

Raft::Raft(Config config, LogStorage& storage, TimePoint now)
    : id_(config.id),
      group_(config.group),
      check_quorum_(config.check_quorum),
      rng_state_(config.random_seed ^ (config.id * 0x9e3779b97f4a7c15ull) ^
                 (config.group * 0xbf58476d1ce4e5b9ull)),
      promise_window_(config.promise_window()),
      election_min_(milliseconds(config.election_timeout_min_ms)),
      election_span_(milliseconds(config.election_timeout_max_ms - config.election_timeout_min_ms)),
      heartbeat_(milliseconds(config.heartbeat_ms)),
      check_quorum_window_(config.check_quorum_window()),
      config_(std::move(config)),
      storage_(storage) {
  auto valid = config_.validate();
  NORI_ASSERT(valid.ok(), "invalid raft config: {}", valid.error().to_string());

  HardState hs = storage_.hard_state();
  term_ = durable_term_ = hs.term;
  vote_ = durable_vote_ = hs.vote;
  Index first = storage_.first_index();
  Index last = storage_.last_index();
  NORI_ASSERT(first >= 1 && last + 1 >= first, "storage range [{}, {}]", first, last);
  auto last_term = storage_.term(last);
  NORI_ASSERT(last_term.ok(), "storage cannot give the term of its last index {}", last);
  last_index_ = durable_index_ = last;
  last_now_ = now;
  last_term_ = *last_term;
  mem_first_ = last + 1;

  NORI_ASSERT(config_.applied <= last, "applied {} beyond the durable log {}", config_.applied,
              last);
  applied_ = apply_sent_ = config_.applied;
  // The stored commit is a hint at most the real commit index; anything the
  // state machine applied was committed.
  commit_ = std::max(std::min(hs.commit, last), applied_);

  // The configuration: the snapshot's (or the bootstrap one), then every
  // configuration entry of the durable log after it; the latest is in effect
  // whether committed or not.
  SnapshotMeta snap = storage_.snapshot_meta();
  // The snapshot covers everything before the log (entries may also be
  // kept behind it: snapshot_keep_entries).
  // (A storage without snapshot support reports none: index 0.)
  NORI_ASSERT(snap.index == 0 || first <= snap.index + 1,
              "the log starts at {} past snapshot {} + 1", first, snap.index);
  if (snap.index > 0) {
    configs_.push_back(ConfigAt{snap.index, snap.membership});
  } else {
    Membership boot{.voters = config_.voters, .learners = config_.learners};
    boot.normalize();
    configs_.push_back(ConfigAt{0, std::move(boot)});
  }
  std::vector<Entry> conf;
  auto scanned = storage_.config_entries(snap.index + 1, conf);
  NORI_ASSERT(scanned.ok(), "cannot read configuration entries: {}",
              scanned.ok() ? "" : scanned.error().to_string());
  for (const Entry& e : conf) {
    auto m = Membership::decode(e.data);
    NORI_ASSERT(m.ok(), "durable configuration entry {} is corrupt", e.index);
    configs_.push_back(ConfigAt{e.index, std::move(*m)});
  }
  // Snapshots: the state machine was restored from the snapshot before
  // construction (raft/storage.h, "Recovery"): it never re-applies entries
  // at or below it.
  NORI_ASSERT(snap.index == 0 || config_.applied >= snap.index,
              "applied {} below the snapshot index {}: restore the snapshot first", config_.applied,
              snap.index);
  snapshot_ = snap;
  applied_membership_ = configs_.front().membership;
  for (const ConfigAt& c : configs_) {
    if (c.index <= applied_) {
      applied_membership_ = c.membership;
    } else {
      apply_configs_.push_back(c);
    }
  }
  apply_membership(now);
  trim_configs();

  // lease: a restarted process cannot remember promises it made before it
  // stopped, so it assumes a full one is outstanding (docs/lease.md, "Restart").
  // A replica whose durable term is 0 has never sent a message in any term
  // (a term is durable before any message is sent in it), so it has never
  // promised anything: a freshly created group elects and commits at once.
  promise_until_ = hs.term == 0 ? now : now + promise_window_;
  promise_leader_ = kNoNode;
  promise_term_ = 0;
  reset_election_deadline(now);
}

Raft::~Raft() = default;

void Raft::InflightRing::push_back(Inflight f, size_t capacity) {
  if (buf_.empty()) buf_.resize(capacity);
  NORI_ASSERT(size_ < buf_.size(), "inflight ring overflow ({})", buf_.size());
  buf_[(head_ + size_) % buf_.size()] = f;
  ++size_;
}

void Raft::take_ready(Ready& out) {
  out.clear();
  if (membership_check_) {
    membership_check_ = false;
    maybe_advance_membership(last_now_);
  }
  // New entries proposed since the last drain go out as one append per
  // follower: this is where proposals are batched.
  if (appends_dirty_) flush_appends();
  emit_committed();
  if (need_hard_state_) {
    out.hard_state = HardState{term_, vote_, commit_hint()};
    need_hard_state_ = false;
  } else if (out_mask_ & kOutMessages) {
    // A message gated on the hard state needs one in this Ready to wait for:
    // re-issue the current one if an earlier record is still in flight, or
    // release the message if the acknowledgement already came.
    bool durable = durable_term_ == term_ && durable_vote_ == vote_;
    for (OutMessage& m : ready_.messages) {
      if (m.after != SendAfter::kHardState) continue;
      if (durable) {
        m.after = SendAfter::kNow;
      } else {
        out.hard_state = HardState{term_, vote_, commit_hint()};
        break;
      }
    }
  }
  out.commit = commit_hint();
  // Swap only what was produced (out_mask_): `out` was cleared, so ready_
  // gets back empty buffers, and untouched vectors cost no cache misses.
  if (out_mask_ & kOutEntries) {
    out.entries.swap(ready_.entries);
    std::swap(out.truncate_from, ready_.truncate_from);
  }
  if (out_mask_ & kOutMessages) out.messages.swap(ready_.messages);
  if (out_mask_ & kOutCommitted) out.committed.swap(ready_.committed);
  if (out_mask_ & kOutReads) out.reads.swap(ready_.reads);
  if (out_mask_ & kOutProposals) out.proposals.swap(ready_.proposals);
  if (out_mask_ & kOutEvents) out.events.swap(ready_.events);
  if (out_mask_ & kOutSnapshot) {
    out.snapshot = std::move(ready_.snapshot);
  }
  out_mask_ = 0;
}

Index Raft::commit_hint() const {
  // A commit index safe to persist: entries up to it are committed AND
  // durable here. commit_ alone is not: a follower learns commits for
  // entries (or a truncation) still queued for its disk, and the hard-state
  // record may become durable ahead of them; after a crash a restart would
  // then apply a stale entry still on disk at a "committed" index.
  return std::min(commit_, durable_index_);
}

TimePoint Raft::next_tick() const {
  // Quiesced: no timer at all until something wakes the group (a driver
  // keeps thousands of idle groups off its tick wheel this way).
  if (quiesced_) return TimePoint::max();
  if (role_ == Role::kLeader) {
    TimePoint t = next_heartbeat_;
    if (leader_waiting_) t = std::min(t, leader_wait_until_);
    if (transfer_target_ != kNoNode) t = std::min(t, transfer_deadline_);
    t = std::min(t, earliest_deadline_);  // max when none is pending
    return t;
  }
  if (!is_voter_) return TimePoint::max();
  return election_deadline_;
}

RaftStatus Raft::status() const {
  RaftStatus s;
  s.id = id_;
  s.group = group_;
  s.role = role_;
  s.term = term_;
  s.vote = vote_;
  s.leader = leader_;
  s.last_index = last_index_;
  s.last_term = last_term_;
  s.durable_index = durable_index_;
  s.commit = commit_;
  s.applied = applied_;
  if (role_ == Role::kLeader) {
    s.lease_until = lease_until();
    s.leader_wait_until = leader_wait_until_;
    s.term_start_index = term_start_index_;
    s.lease_ended = lease_ended_;
  }
  s.promise_until = promise_until_;
  s.promise_leader = promise_leader_;
  s.promise_term = promise_term_;
  s.uncommitted_bytes = uncommitted_bytes_;
  s.elections_started = elections_started_;
  return s;
}

void Raft::event(EventKind kind, NodeId node, TimePoint now) {
  ready_.events.push_back(Event{kind, group_, term_, node, now});
  out_mask_ |= kOutEvents;
}

uint64_t Raft::random_next() {
  // splitmix64: deterministic per (seed, node, group).
  uint64_t z = (rng_state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// --- sending ---------------------------------------------------------------------

void Raft::send(NodeId to, MessageBody body, SendAfter after) {
  send_with_term(to, term_, std::move(body), after);
}

void Raft::send_with_term(NodeId to, Term term, MessageBody body, SendAfter after) {
  // Durability rule 1: a term is durable before any message is sent in it.
  // Any message stamped with a term this node has not yet made durable waits
  // for the hard-state record (a pre-vote request is stamped with term+1 but
  // promises nothing, and its sender persists nothing for it).
  bool is_pre_vote =
      std::holds_alternative<VoteRequest>(body) && std::get<VoteRequest>(body).pre_vote;
  bool is_pre_vote_reply =
      std::holds_alternative<VoteReply>(body) && std::get<VoteReply>(body).pre_vote;
  if (!is_pre_vote && !is_pre_vote_reply && durable_term_ < term_ && after == SendAfter::kNow) {
    after = SendAfter::kHardState;
  }
  ready_.messages.push_back(OutMessage{Message{group_, id_, to, term, std::move(body)}, after});
  out_mask_ |= kOutMessages;
}

// --- timers ----------------------------------------------------------------------

void Raft::reset_election_deadline(TimePoint now) {
  election_deadline_ = now + election_min_ +
                       ns(static_cast<int64_t>(random_next() % uint64_t(election_span_.count())));
}

void Raft::tick(TimePoint now) {
  last_now_ = std::max(last_now_, now);
  apply_blocked_ = false;
  // A quiesced group has no deadline to meet (next_tick() is max); a driver
  // that ticks it anyway changes nothing. Never quiesced while a snapshot
  // is being received, so the transfer timeout below cannot be skipped.
  if (quiesced_) return;
  if (recv_.meta.index != 0 && !recv_.complete && now >= recv_.deadline) {
    // A stalled transfer is forgotten (the next one starts at 0). Twice the
    // leader's re-drive timeout, so that a leader that re-drives resumes.
    recv_ = Receiving{};
  }
  if (role_ != Role::kLeader) {
    if (is_voter_ && now >= election_deadline_) campaign(now);
    return;
  }
  // Check-quorum, once per heartbeat interval: a leader that has not heard
  // from a quorum within the window steps down, so a partitioned leader
  // stops accepting proposals (propose() also checks it on every call).
  if (now >= next_heartbeat_ && check_quorum_ && !quorum_active(now)) {
    step_down_as_leader(now, "check-quorum: no quorum heard within the window");
    return;
  }
  if (transfer_target_ != kNoNode && now >= transfer_deadline_) {
    // Give up; the lease stays ended for this term if TimeoutNow went out
    // (it may still arrive, late or twice).
    transfer_target_ = kNoNode;
  }
  if (leader_waiting_ && now >= leader_wait_until_) maybe_commit(now);
  if (now >= next_heartbeat_) {
    // Quiescence: idle for kQuiesceIdleRounds heartbeat ticks in a row, the
    // leader sends its last (quiesce) round instead and stops ticking.
    if (quiesce_ready(now)) {
      if (++idle_rounds_ >= kQuiesceIdleRounds) {
        quiesce(now);
        return;
      }
    } else {
      idle_rounds_ = 0;
    }
    send_heartbeat_round(now);
  }
  // (earliest_deadline_ is max when no proposal is pending.)
  if (now >= earliest_deadline_) expire_proposals(now);
}

bool Raft::quorum_active(TimePoint now) const {
  return self_quorum_ || now - check_quorum_window_ <= quorum_heard_;
}

void Raft::heard_from(Progress& p, TimePoint now) {
  p.last_heard = now;
  // The newest time by which a quorum (this leader included) had been heard
  // from, recomputed here while the progress entries are hot so that the
  // per-tick check-quorum touches one field.
  auto key = [](TimePoint t) { return static_cast<uint64_t>(base::to_ns(t)) ^ (1ull << 63); };
  uint64_t q = quorum_of(UINT64_MAX, [&](const Progress& x) { return key(x.last_heard); });
  if (q != UINT64_MAX) {
    quorum_heard_ = base::time_from_ns(static_cast<int64_t>(q ^ (1ull << 63)));
  } else {
    quorum_heard_ = now;  // a single-voter group hears from its quorum always
  }
}

// --- quiescence ------------------------------------------------------------------

bool Raft::leader_node_live(TimePoint now) const {
  return config_.liveness != nullptr && leader_ != kNoNode &&
         config_.liveness->node_live(leader_, now);
}

bool Raft::quiesce_ready(TimePoint now) const {
  if (config_.liveness == nullptr || role_ != Role::kLeader) return false;
  // Nothing the leader still has to drive by itself: every condition below
  // is one a tick or a round would otherwise move forward.
  if (transfer_target_ != kNoNode || leader_waiting_ || commit_ < term_start_index_) return false;
  if (!proposals_.empty() || !reads_.empty() || read_round_wanted_) return false;
  if (commit_ != last_index_ || durable_index_ != last_index_ || apply_sent_ != commit_ ||
      apply_blocked_ || appends_dirty_ || membership_check_) {
    return false;
  }
  if (member_change_in_progress()) return false;
  if (check_quorum_ && !quorum_active(now)) return false;
  for (const Progress& p : peers_) {
    // Every peer holds the whole log and answered the latest round (so it is
    // responsive now); its node is live, so the driver will tell us if it
    // goes silent while we are quiet.
    if (p.match != last_index_ || p.acked_round != round_ || p.snapshotting ||
        !p.inflight.empty() || !config_.liveness->node_live(p.id, now)) {
      return false;
    }
  }
  return true;
}

void Raft::quiesce(TimePoint now) {
  NORI_ASSERT(role_ == Role::kLeader && commit_ == last_index_);
  // The last round carries the commit index (= last index) and the flag; a
  // follower whose log ends there stops its timer (handle_heartbeat).
  send_heartbeat_round(now, /*quiesce=*/true);
  quiesced_ = true;
  idle_rounds_ = 0;
  // lease: no lease earned before quiescence is used after it. A lease read
  // after the wake needs a round sent after this one (the lease argument
  // would allow the remaining lease; this is the simple rule: a leader that
  // stopped listening proves its leadership again before serving).
  lease_min_round_ = std::max(lease_min_round_, round_ + 1);
  release_idle_memory();  // after lease_min_round_: the rounds may go
}

void Raft::wake(TimePoint now) {
  idle_rounds_ = 0;
  if (!quiesced_) return;
  quiesced_ = false;
  if (role_ == Role::kLeader) {
    // Check-quorum: while quiet, node liveness stood in for the replies of
    // peers. A peer whose node is live counts as heard now; one whose node
    // is not keeps its old time, so a leader that lost its quorum steps
    // down at its next tick (next_heartbeat_ is in the past). No lease
    // comes from this: leases come from acknowledged rounds only.
    for (Progress& p : peers_) {
      if (config_.liveness->node_live(p.id, now)) heard_from(p, now);
    }
    next_heartbeat_ = std::min(next_heartbeat_, now);
  } else {
    // The timer restarts from now: a follower that woke because its
    // leader's node went silent campaigns after a normal election timeout.
    reset_election_deadline(now);
  }
}

void Raft::release_idle_memory() {
  const Index evictable = std::min(applied_, durable_index_);
  while (!mem_.empty() && mem_first_ <= evictable) {
    mem_bytes_ -= entry_bytes(mem_.front());
    mem_.pop_front();
    ++mem_first_;
  }
  mem_.release();
  proposals_.release();
  apply_configs_.release();
  if (reads_.empty()) std::vector<PendingRead>().swap(reads_);
  for (Progress& p : peers_)
    p.inflight.release();
  // lease: a follower's rounds are of no use (become_leader starts afresh);
  // a quiesced leader's lease_min_round_ is past every round sent so far,
  // so none of them can give a lease any more: their send times may go.
  if (role_ != Role::kLeader || round_ < lease_min_round_) rounds_.release();
  // Output buffers not holding output (the quiesce round's messages are
  // still in ready_.messages: those stay).
  if (!(out_mask_ & kOutEntries)) std::vector<Entry>().swap(ready_.entries);
  if (!(out_mask_ & kOutCommitted)) std::vector<Entry>().swap(ready_.committed);
  if (!(out_mask_ & kOutReads)) std::vector<ReadResult>().swap(ready_.reads);
  if (!(out_mask_ & kOutProposals)) std::vector<ProposalResult>().swap(ready_.proposals);
  if (!(out_mask_ & kOutEvents)) std::vector<Event>().swap(ready_.events);
}

void Raft::unquiesce(TimePoint now) {
  last_now_ = std::max(last_now_, now);
  wake(now);
}

void Raft::liveness_lost(NodeId node, TimePoint now) {
  last_now_ = std::max(last_now_, now);
  if (!quiesced_) return;
  if (role_ == Role::kLeader ? is_peer(node) : node == leader_) wake(now);
}

// --- roles -----------------------------------------------------------------------

void Raft::set_term(Term term, TimePoint now) {
  NORI_ASSERT(term > term_, "term must grow: {} -> {}", term_, term);
  term_ = term;
  vote_ = kNoNode;
  need_hard_state_ = true;
}

void Raft::become_follower(Term term, NodeId leader, TimePoint now) {
  if (role_ == Role::kLeader) step_down_as_leader(now, "higher term");
  quiesced_ = false;  // a role change always wakes (the deadline is reset below)
  if (term > term_) set_term(term, now);
  role_ = Role::kFollower;
  if (leader != kNoNode && leader != leader_) event(EventKind::kLeaderElected, leader, now);
  leader_ = leader;
  reset_election_deadline(now);
}

void Raft::step_down_as_leader(TimePoint now, const char* why) {
  NORI_ASSERT(role_ == Role::kLeader);
  event(EventKind::kStepDown, id_, now);
  for (Progress& p : peers_)
    end_snapshot_transfer(p);
  role_ = Role::kFollower;
  quiesced_ = false;
  idle_rounds_ = 0;
  leader_ = kNoNode;
  // Everything in flight loses its leader: proposals may still commit under a
  // later leader (outcome unknown), reads were not served (not leader).
  fail_pending(now, kNoNode);
  transfer_target_ = kNoNode;
  leader_waiting_ = false;
  appends_dirty_ = false;
  reset_election_deadline(now);
  (void)why;
}

void Raft::campaign(TimePoint now) {
  if (!is_voter_ || role_ == Role::kLeader) return;
  if (config_.pre_vote) {
    become_pre_candidate(now);
  } else {
    become_candidate(now, kNoNode, 0, Duration(0));
  }
}

void Raft::become_pre_candidate(TimePoint now) {
  role_ = Role::kPreCandidate;
  quiesced_ = false;
  leader_ = kNoNode;
  for (Progress& p : peers_)
    p.vote = -1;
  reset_election_deadline(now);
  for (Progress& p : peers_) {
    if (!quorum_.contains(p.id)) continue;  // learners do not vote
    send_with_term(
        p.id, term_ + 1,
        VoteRequest{.pre_vote = true, .last_index = last_index_, .last_term = last_term_},
        SendAfter::kNow);
  }
  maybe_count_votes(now);
}

void Raft::become_candidate(TimePoint now, NodeId transfer_leader, Term transfer_term,
                            Duration handed_over_wait) {
  set_term(term_ + 1, now);
  vote_ = id_;
  role_ = Role::kCandidate;
  quiesced_ = false;
  ++elections_started_;
  leader_ = kNoNode;
  self_vote_durable_ = false;
  for (Progress& p : peers_)
    p.vote = -1;
  campaign_transfer_leader_ = transfer_leader;
  campaign_transfer_term_ = transfer_term;
  // lease: the self-vote carries this node's own remaining promise (measured
  // on this clock, so no widening); a transfer also hands over what was left
  // of the old leader's post-election wait, measured on its clock (widened).
  candidate_wait_until_ = now + promise_remaining(now, transfer_leader, transfer_term);
  if (handed_over_wait > Duration(0)) {
    candidate_wait_until_ =
        std::max(candidate_wait_until_, now + config_.widen_for_drift(handed_over_wait));
  }
  reset_election_deadline(now);
  // Sent only once the new term and self-vote are durable (send() marks them
  // kHardState: the term is not durable yet).
  for (Progress& p : peers_) {
    if (!quorum_.contains(p.id)) continue;  // learners do not vote
    send(p.id,
         VoteRequest{.pre_vote = false,
                     .last_index = last_index_,
                     .last_term = last_term_,
                     .transfer_leader = transfer_leader,
                     .transfer_term = transfer_term},
         SendAfter::kHardState);
  }
  // The self-vote counts only after hard_state_persisted() (durability rule 2).
}

void Raft::maybe_count_votes(TimePoint now) {
  if (role_ != Role::kPreCandidate && role_ != Role::kCandidate) return;
  bool pre = role_ == Role::kPreCandidate;
  VoteResult r = quorum_.vote_result([&](NodeId id) -> int {
    if (id == id_) return pre || self_vote_durable_ ? 1 : -1;
    for (const Progress& p : peers_) {
      if (p.id == id) return p.vote;
    }
    return -1;
  });
  if (r == VoteResult::kWon) {
    if (pre) {
      become_candidate(now, kNoNode, 0, Duration(0));
    } else {
      become_leader(now);
    }
  } else if (r == VoteResult::kLost) {
    become_follower(term_, kNoNode, now);
  }
}

void Raft::become_leader(TimePoint now) {
  NORI_ASSERT(role_ == Role::kCandidate && vote_ == id_ && self_vote_durable_);
  role_ = Role::kLeader;
  leader_ = id_;
  quiesced_ = false;
  idle_rounds_ = 0;
  event(EventKind::kLeaderElected, id_, now);
  // lease: neither commit nor serve lease reads before every counted voter's
  // remaining promise to an earlier leader has passed (docs/lease.md).
  leader_wait_until_ = config_.unsafe_skip_new_leader_lease_wait_for_testing
                           ? TimePoint::min()
                           : candidate_wait_until_;
  leader_waiting_ = now < leader_wait_until_;
  round_ = 0;
  read_round_ = 0;
  rounds_.clear();
  lease_ended_ = false;
  lease_min_round_ = 0;
  read_round_wanted_ = false;
  transfer_target_ = kNoNode;
  timeout_now_sent_ = false;
  uncommitted_bytes_ = 0;
  NORI_ASSERT(proposals_.empty() && reads_.empty());
  for (Progress& p : peers_) {
    p.match = 0;
    p.next = last_index_ + 1;
    p.replicating = false;
    p.probe_sent = false;
    p.inflight.clear();
    p.inflight_bytes = 0;
    p.acked_round = 0;
    p.match_at_round = 0;
    p.stalled_rounds = 0;
    // A grace period: check-quorum counts a peer as heard at election.
    heard_from(p, now);
  }
  quorum_heard_ = now;
  // The no-op commits this leader's term: reads need a committed entry of the
  // current term, and older entries commit only through it.
  term_start_index_ = last_index_ + 1;
  append_local(Entry{term_, term_start_index_, EntryType::kNoop, {}}, now);
  // Probes carrying the no-op find each follower's match; the heartbeat
  // round right after starts the first lease (its send time is the lease
  // start once a quorum acknowledges it) and confirms reads queued later.
  for (Progress& p : peers_)
    send_append(p, true);
  send_heartbeat_round(now);
  maybe_commit(now);  // single-voter groups
}

// --- elections -------------------------------------------------------------------

void Raft::step(Message m, TimePoint now) {
  last_now_ = std::max(last_now_, now);
  NORI_ASSERT(m.group == group_, "message for group {} stepped into group {}", m.group, group_);
  if (m.to != id_ || m.from == id_ || m.from == kNoNode) return;
  MessageType type = m.type();
  // Messages from nodes outside this replica's configuration are dropped,
  // except those only a leader sends: a replica that has not yet received
  // the configuration entry naming it (a joining node starts with none) must
  // still accept its leader. Accepting a leader's message is safe from
  // anyone (at most one leader per term); dropping the rest keeps removed
  // nodes from disrupting elections.
  bool from_leader = type == MessageType::kAppend || type == MessageType::kHeartbeat ||
                     type == MessageType::kTimeoutNow || type == MessageType::kSnapshotChunk;
  if (!from_leader && !is_peer(m.from)) return;

  if (m.term > term_) {
    if (type == MessageType::kVoteRequest) {
      const auto& req = std::get<VoteRequest>(m.body);
      // Leader stickiness: while this node hears from a live leader it ignores
      // (pre-)votes, so a partitioned node rejoining cannot depose a healthy
      // leader. A transfer away from the leader we know bypasses it.
      bool transfer =
          req.transfer_leader != kNoNode && (req.transfer_leader == leader_ || leader_ == kNoNode);
      // A quiesced follower has not heard from its leader for a while by
      // design: liveness of the leader's node stands in for its heartbeats
      // (a quiesced leader stays leader; its followers must not vote it
      // out because they were told to stop listening). Except when the
      // candidate IS that leader: it stopped leading (its process restarted
      // within the liveness timeout, or it stepped down), and ignoring it
      // would leave the group without a leader for good (the simulator
      // found this: quiesced followers kept ignoring a restarted leader).
      bool in_lease = check_quorum_ && leader_ != kNoNode &&
                      (role_ == Role::kLeader ||
                       now < last_leader_contact_ + milliseconds(config_.election_timeout_min_ms) ||
                       (quiesced_ && m.from != leader_ && leader_node_live(now)));
      if (in_lease && !transfer) {
        // Ignored. A quiesced leader still wakes: the node campaigning
        // missed its heartbeats, and only new rounds bring it back.
        if (role_ == Role::kLeader) wake(now);
        return;
      }
      if (!req.pre_vote) become_follower(m.term, kNoNode, now);
    } else if (type == MessageType::kVoteReply && std::get<VoteReply>(m.body).pre_vote &&
               std::get<VoteReply>(m.body).granted) {
      // A granted pre-vote is stamped with the term we would campaign in.
    } else {
      NodeId leader = from_leader ? m.from : kNoNode;
      become_follower(m.term, leader, now);
    }
  } else if (m.term < term_) {
    reply_stale_term(m);
    return;
  }
  // Quiescence: any message of the current term wakes the group, except
  // the replies to the quiesce round and a (repeated) quiesce heartbeat.
  if (quiesced_ && type != MessageType::kHeartbeatReply &&
      !(type == MessageType::kHeartbeat && std::get<Heartbeat>(m.body).quiesce)) {
    wake(now);
  }

  switch (type) {
    case MessageType::kVoteRequest:
      handle_vote_request(m, std::get<VoteRequest>(m.body), now);
      break;
    case MessageType::kVoteReply:
      handle_vote_reply(m, std::get<VoteReply>(m.body), now);
      break;
    case MessageType::kAppend:
      handle_append(m, std::get<Append>(m.body), now);
      break;
    case MessageType::kAppendReply:
      handle_append_reply(m, std::get<AppendReply>(m.body), now);
      break;
    case MessageType::kHeartbeat:
      handle_heartbeat(m, std::get<Heartbeat>(m.body), now);
      break;
    case MessageType::kHeartbeatReply:
      handle_heartbeat_reply(m, std::get<HeartbeatReply>(m.body), now);
      break;
    case MessageType::kTimeoutNow:
      handle_timeout_now(m, std::get<TimeoutNow>(m.body), now);
      break;
    case MessageType::kSnapshotChunk:
      handle_snapshot_chunk(m, *std::get<SnapshotChunkMsg>(m.body), now);
      break;
    case MessageType::kSnapshotReply:
      handle_snapshot_reply(m, std::get<SnapshotReply>(m.body), now);
      break;
  }
}

void Raft::reply_stale_term(const Message& m) {
  // A message from an older term. Tell a stale leader about the newer term so
  // it steps down (with check-quorum and pre-vote, nobody else would), and
  // answer a stale pre-vote so the pre-candidate learns it is behind.
  switch (m.type()) {
    case MessageType::kAppend:
      send(m.from, AppendReply{.success = false, .last_index = last_index_}, SendAfter::kNow);
      break;
    case MessageType::kHeartbeat:
      send(m.from, HeartbeatReply{.round = 0}, SendAfter::kNow);
      break;
    case MessageType::kVoteRequest:
      if (std::get<VoteRequest>(m.body).pre_vote) {
        send(m.from, VoteReply{.pre_vote = true, .granted = false}, SendAfter::kNow);
      }
      break;
    default:
      break;
  }
}

bool Raft::log_up_to_date(Index last_index, Term last_term) const {
  return last_term > last_term_ || (last_term == last_term_ && last_index >= last_index_);
}

Duration Raft::promise_remaining(TimePoint now, NodeId excluded_leader, Term excluded_term) const {
  // lease: a transfer releases only the promise to exactly the leader and term
  // it replaces, which ended its lease before sending TimeoutNow. The newest
  // promise dominates every older one (same window W, later receipt), so
  // dropping it drops nothing an older leader could still rely on that the
  // transferring leader's own wait (handed over in TimeoutNow) does not cover.
  if (excluded_leader != kNoNode && promise_leader_ == excluded_leader &&
      promise_term_ == excluded_term) {
    return Duration(0);
  }
  return promise_until_ > now ? promise_until_ - now : Duration(0);
}

void Raft::handle_vote_request(const Message& m, const VoteRequest& req, TimePoint now) {
  if (req.pre_vote) {
    // Grant when an election in m.term would be legitimate from here: the
    // candidate's term is ahead and its log is at least as up to date.
    // Nothing changes and nothing is persisted.
    bool grant = m.term > term_ && log_up_to_date(req.last_index, req.last_term);
    send_with_term(m.from, grant ? m.term : term_, VoteReply{.pre_vote = true, .granted = grant},
                   SendAfter::kNow);
    return;
  }
  NORI_ASSERT(m.term == term_);
  event(EventKind::kVoteRequest, m.from, now);
  bool can_vote = vote_ == m.from || (vote_ == kNoNode && leader_ == kNoNode);
  if (can_vote && log_up_to_date(req.last_index, req.last_term)) {
    if (vote_ != m.from) {
      vote_ = m.from;
      need_hard_state_ = true;
    }
    reset_election_deadline(now);
    // Durability rule 2: the grant leaves only once the vote is durable
    // (kHardState). lease: it carries this voter's remaining promise.
    Duration r = promise_remaining(now, req.transfer_leader, req.transfer_term);
    bool durable = durable_term_ == term_ && durable_vote_ == vote_;  // a repeated request
    send(m.from, VoteReply{.pre_vote = false, .granted = true, .promise_remaining_ns = r.count()},
         durable ? SendAfter::kNow : SendAfter::kHardState);
  } else {
    send(m.from, VoteReply{.pre_vote = false, .granted = false}, SendAfter::kNow);
  }
}

void Raft::handle_vote_reply(const Message& m, const VoteReply& rep, TimePoint now) {
  Progress* p = progress(m.from);
  if (p == nullptr) return;
  if (rep.pre_vote) {
    if (role_ != Role::kPreCandidate) return;
    if (rep.granted && m.term != term_ + 1) return;  // from an older pre-campaign
    p->vote = rep.granted ? 1 : 0;
  } else {
    if (role_ != Role::kCandidate || m.term != term_) return;
    if (p->vote == -1 && rep.granted) {
      // lease: wait out the voter's remaining promise, measured on its clock
      // from (before) the time we received it, widened for drift.
      candidate_wait_until_ = std::max(candidate_wait_until_,
                                       now + config_.widen_for_drift(ns(rep.promise_remaining_ns)));
      event(EventKind::kVoteGranted, m.from, now);
    }
    if (p->vote == -1) p->vote = rep.granted ? 1 : 0;
  }
  maybe_count_votes(now);
}

void Raft::hard_state_persisted(const HardState& hs, TimePoint now) {
  last_now_ = std::max(last_now_, now);
  if (hs.term > durable_term_) {
    durable_term_ = hs.term;
    durable_vote_ = hs.vote;
  } else if (hs.term == durable_term_ && durable_vote_ == kNoNode) {
    durable_vote_ = hs.vote;
  }
  if (role_ == Role::kCandidate && durable_term_ == term_ && durable_vote_ == id_ &&
      !self_vote_durable_) {
    self_vote_durable_ = true;
    maybe_count_votes(now);
  }
}

// --- replication, follower side -----------------------------------------------------

void Raft::extend_promise(NodeId leader, TimePoint now) {
  // lease: every reply to a leader extends the promise to it, from the time
  // the message being answered was received.
  promise_until_ = std::max(promise_until_, now + promise_window_);
  promise_leader_ = leader;
  promise_term_ = term_;
}

void Raft::handle_append(Message& m, Append& app, TimePoint now) {
  NORI_ASSERT(role_ != Role::kLeader, "two leaders in term {}: {} and {}", term_, id_, m.from);
  if (role_ != Role::kFollower || leader_ != m.from) become_follower(term_, m.from, now);
  last_leader_contact_ = now;
  reset_election_deadline(now);

  // Reject malformed appends outright (no reply): indexes must be contiguous
  // from prev_index + 1 and terms non-decreasing, within [prev_term, term].
  Term prev_t = app.prev_term;
  for (size_t i = 0; i < app.entries.size(); ++i) {
    const Entry& e = app.entries[i];
    if (e.index != app.prev_index + 1 + i || e.term < prev_t || e.term > m.term) return;
    if (e.type == EntryType::kConfig && !Membership::decode(e.data).ok()) return;
    prev_t = e.term;
  }

  extend_promise(m.from, now);
  bool matches;
  if (app.prev_index <= commit_) {
    matches = true;  // the committed prefix is identical on every replica
  } else if (app.prev_index > last_index_) {
    matches = false;
  } else {
    auto t = try_term_at(app.prev_index);
    matches = t && *t == app.prev_term;
  }
  if (!matches) {
    AppendReply rep{.success = false, .last_index = last_index_, .rejected_index = app.prev_index};
    if (app.prev_index > last_index_) {
      rep.conflict_index = last_index_ + 1;
      rep.conflict_term = 0;
    } else {
      auto t_prev = try_term_at(app.prev_index);
      if (!t_prev) return;  // storage unreadable: no reply; the leader retries
      Term ct = *t_prev;
      Index ci = app.prev_index;
      // Everything up to commit_ matches the leader, so the scan stops there.
      while (ci > commit_ + 1) {
        auto t = try_term_at(ci - 1);
        if (!t || *t != ct) break;
        --ci;
      }
      rep.conflict_index = ci;
      rep.conflict_term = ct;
    }
    send(m.from, rep, SendAfter::kNow);
    return;
  }

  Index last_new = app.prev_index + app.entries.size();
  Term before = app.prev_term;  // term of the entry before `e`, which matches the leader's
  for (Entry& e : app.entries) {
    Term term = e.term;
    if (e.index > commit_) {
      if (e.index <= last_index_) {
        auto t = try_term_at(e.index);
        if (!t) return;  // storage unreadable: no reply; the leader retries
        if (*t == e.term) {
          before = term;
          continue;
        }
        // Conflict: drop our suffix from here (never a committed entry).
        truncate_from(e.index, before, now);
      }
      append_local(std::move(e), now);
    }
    before = term;
  }
  if (app.commit > commit_) commit_ = std::max(commit_, std::min(app.commit, last_new));
  // Durability rule 3: acknowledged only once everything up to last_new (and
  // any truncation) is durable.
  SendAfter after = last_new <= durable_index_ ? SendAfter::kNow : SendAfter::kEntries;
  send(m.from, AppendReply{.success = true, .match_index = last_new, .last_index = last_index_},
       after);
}

void Raft::handle_heartbeat(const Message& m, const Heartbeat& hb, TimePoint now) {
  NORI_ASSERT(role_ != Role::kLeader, "two leaders in term {}: {} and {}", term_, id_, m.from);
  if (role_ != Role::kFollower || leader_ != m.from) become_follower(term_, m.from, now);
  last_leader_contact_ = now;
  reset_election_deadline(now);
  extend_promise(m.from, now);
  // The leader clamps the commit to what it knows we hold; we clamp again to
  // what we have.
  if (hb.commit > commit_) commit_ = std::max(commit_, std::min(hb.commit, last_index_));
  // Heartbeat replies never wait for a data sync (only for a term change,
  // which send() enforces).
  send(m.from, HeartbeatReply{.round = hb.round}, SendAfter::kNow);
  // Quiescence: the leader quiesces only once our match is its last index
  // and everything is committed, so hb.commit is the leader's last index.
  // Our log matches it exactly when it also ends there; with a longer log
  // (an old leader's uncommitted suffix) or a receive in progress we keep
  // our timer: we will campaign, and our pre-vote wakes the leader, whose
  // next appends repair the log.
  if (hb.quiesce && config_.liveness != nullptr && last_index_ == hb.commit &&
      commit_ == last_index_ && durable_index_ == last_index_ && !apply_blocked_ &&
      recv_.meta.index == 0) {
    quiesced_ = true;
    release_idle_memory();
  } else {
    quiesced_ = false;
  }
}

void Raft::entries_persisted(Index index, Term term, TimePoint now) {
  last_now_ = std::max(last_now_, now);
  if (index <= durable_index_ || index > last_index_) return;
  auto t = try_term_at(index);
  if (!t || *t != term) return;  // acknowledges entries since truncated
  durable_index_ = index;
  if (role_ == Role::kLeader) {
    // The leader counts itself only once durable.
    maybe_commit(now);
    maybe_send_timeout_now(now);
  }
}

void Raft::applied(Index index, TimePoint now) {
  NORI_ASSERT(index <= apply_sent_, "applied {} beyond what was handed out {}", index, apply_sent_);
  if (index <= applied_) return;
  applied_ = index;
  while (!apply_configs_.empty() && apply_configs_.front().index <= applied_) {
    applied_membership_ = std::move(apply_configs_.front().membership);
    apply_configs_.pop_front();
  }
  if (!reads_.empty()) advance_reads(now);
  trim_log_cache();
  maybe_request_snapshot();
}

void Raft::emit_committed() {
  trim_configs();
  Index limit = std::min(commit_, durable_index_);
  if (apply_sent_ >= limit) return;
  uint64_t before = ready_.committed.size();
  if (auto st = fetch_entries(apply_sent_ + 1, limit + 1, config_.apply_batch_bytes_max, UINT32_MAX,
                              ready_.committed);
      !st.ok()) {
    // Not readable now: stop reporting apply work (a driver would spin on
    // has_ready()). kUnavailable: the storage is fetching the entries and
    // entries_fetched() retries; any other error (kIo, kCorruption): the next
    // tick() retries, as it always has.
    ready_.committed.resize(before);
    apply_blocked_ = true;
    return;
  }
  for (size_t k = before; k < ready_.committed.size(); ++k) {
    const Entry& e = ready_.committed[k];
    if (e.type != EntryType::kConfig) continue;
    auto m = Membership::decode(e.data);
    NORI_ASSERT(m.ok(), "committed configuration entry {} is corrupt", e.index);
    apply_configs_.push_back(ConfigAt{e.index, std::move(*m)});
  }
  apply_sent_ += ready_.committed.size() - before;
  if (!ready_.committed.empty()) out_mask_ |= kOutCommitted;
}

void Raft::entries_fetched(TimePoint now) {
  last_now_ = std::max(last_now_, now);
  // Committed entries: emit_committed() runs again at the next take_ready().
  apply_blocked_ = false;
  if (role_ != Role::kLeader) {
    // Fetches started while leading are of no use now (the new leader sends).
    for (Progress& p : peers_)
      p.fetch_waiting = false;
    return;
  }
  for (Progress& p : peers_) {
    if (!p.fetch_waiting) continue;
    p.fetch_waiting = false;
    send_append(p, false);  // may set it again if the storage is still short
  }
}

// --- replication, leader side ---------------------------------------------------------

Raft::Progress* Raft::progress(NodeId id) {
  for (Progress& p : peers_) {
    if (p.id == id) return &p;
  }
  return nullptr;
}

const Raft::Progress* Raft::progress(NodeId id) const {
  for (const Progress& p : peers_) {
    if (p.id == id) return &p;
  }
  return nullptr;
}

void Raft::flush_appends() {
  appends_dirty_ = false;
  if (role_ != Role::kLeader) return;
  for (Progress& p : peers_)
    send_append(p, false);
}

void Raft::send_append(Progress& p, bool allow_empty) {
  for (;;) {
    if (!p.replicating && p.probe_sent) return;  // probing: one append per round trip
    if (p.replicating && (p.inflight.size() >= config_.inflight_msgs_max ||
                          p.inflight_bytes >= config_.inflight_bytes_max)) {
      return;  // flow control: the window is full
    }
    if (p.snapshotting) return;  // replication resumes once the snapshot is in
    if (p.next > last_index_ && !allow_empty) return;
    if (p.replicating && p.next <= last_index_ && append_held(p)) return;
    Index prev = p.next - 1;
    if (prev < mem_first_ && prev + 1 < storage_.first_index()) {
      // The entries this follower needs were compacted away.
      send_snapshot(p);
      return;
    }
    auto prev_term = try_term_at(prev);
    if (!prev_term) return;  // unreadable: retried on the next trigger
    Append app{.prev_index = prev, .prev_term = *prev_term, .commit = commit_, .entries = {}};
    if (p.next <= last_index_) {
      auto st = fetch_entries(p.next, last_index_ + 1, config_.append_bytes_max,
                              config_.append_entries_max, app.entries);
      if (!st.ok()) {
        // kUnavailable: the storage is fetching them; entries_fetched()
        // retries. Other errors (kIo, kCorruption): retried on the next
        // trigger (a heartbeat reply), as before. Nothing was sent and the
        // window did not move, so a retry sends the same append once.
        if (st.error().kind() == base::ErrorKind::kUnavailable) p.fetch_waiting = true;
        return;
      }
    }
    p.fetch_waiting = false;
    uint64_t bytes = 0;
    for (const Entry& e : app.entries)
      bytes += entry_bytes(e);
    size_t n = app.entries.size();
    if (p.replicating) {
      if (n > 0) {
        p.next += n;
        p.inflight.push_back(Inflight{p.next - 1, bytes}, config_.inflight_msgs_max);
        p.inflight_bytes += bytes;
        p.append_sent_at = last_now_;
        p.hold_mark = p.next > last_index_ ? appended_bytes_ : kNoHoldMark;
      }
    } else {
      p.probe_sent = true;
    }
    // The leader's own disk write of these entries runs in parallel (kNow).
    send(p.id, std::move(app), SendAfter::kNow);
    if (!p.replicating || n == 0) return;
    allow_empty = false;
  }
}

// Append coalescing (RaftConfig::append_hold_us): entries for a follower with
// an append still unacknowledged wait for that acknowledgement
// (handle_append_reply sends them) unless they are already many bytes or the
// unacknowledged append is old. Liveness is as with a full window: a lost
// append is detected by the stall rule of send_heartbeat_round.
bool Raft::append_held(const Progress& p) const {
  if (config_.append_hold_us == 0 || p.inflight.empty() || p.hold_mark == kNoHoldMark) {
    return false;
  }
  if (appended_bytes_ - p.hold_mark >= config_.append_hold_bytes) return false;
  // Never longer than a heartbeat interval (a short heartbeat_ms caps it).
  const uint64_t hold_us =
      std::min<uint64_t>(config_.append_hold_us, config_.heartbeat_ms * 1000ull);
  return last_now_ - p.append_sent_at < microseconds(hold_us);
}

void Raft::handle_append_reply(const Message& m, const AppendReply& rep, TimePoint now) {
  if (role_ != Role::kLeader) return;
  Progress* pp = progress(m.from);
  if (pp == nullptr) return;
  Progress& p = *pp;
  heard_from(p, now);
  if (rep.success) {
    if (rep.match_index > last_index_) return;  // malformed
    if (rep.match_index > p.match) p.match = rep.match_index;
    while (!p.inflight.empty() && p.inflight.front().last <= p.match) {
      p.inflight_bytes -= p.inflight.front().bytes;
      p.inflight.pop_front();
    }
    if (!p.replicating) {
      p.replicating = true;
      p.probe_sent = false;
      p.next = p.match + 1;
      p.inflight.clear();
      p.inflight_bytes = 0;
    }
    p.next = std::max(p.next, p.match + 1);
    maybe_commit(now);
    maybe_send_timeout_now(now);
    send_append(p, false);
    // A learner marked for promotion may just have caught up (checked at
    // take_ready, see on_commit_advanced).
    if (role_ == Role::kLeader && !membership().promote.empty()) membership_check_ = true;
    return;
  }
  // Rejected: ignore rejections of appends we have already moved past.
  if (rep.rejected_index <= p.match || rep.rejected_index >= p.next) return;
  Index next;
  if (rep.conflict_term == 0) {
    next = rep.conflict_index;
  } else {
    // Fast backtracking: if we hold entries of the follower's conflicting
    // term, resume right after our last one; otherwise skip the follower's
    // whole run of that term.
    next = rep.conflict_index;
    Index i = std::min(rep.rejected_index, last_index_);
    while (i > p.match) {
      auto t = try_term_at(i);
      if (!t || *t < rep.conflict_term) break;
      if (*t == rep.conflict_term) {
        next = i + 1;
        break;
      }
      --i;
    }
  }
  p.next = std::clamp(next, p.match + 1, rep.rejected_index);
  p.replicating = false;
  p.probe_sent = false;
  p.inflight.clear();
  p.inflight_bytes = 0;
  send_append(p, true);
}

void Raft::send_heartbeat_round(TimePoint now, bool quiesce) {
  ++round_;
  rounds_.push(RoundSent{round_, now});
  next_heartbeat_ = now + heartbeat_;
  for (Progress& p : peers_) {
    send(p.id, Heartbeat{.commit = std::min(commit_, p.match), .round = round_, .quiesce = quiesce},
         SendAfter::kNow);
    // Retransmission: appends in flight and no progress over two whole
    // heartbeat intervals means they were lost (not merely waiting for the
    // follower's fsync, which one interval may not cover): probe again from
    // the match index.
    // (Replicating, entries past match were sent: next - 1 > match.)
    if (p.replicating && p.next > p.match + 1 && p.match == p.match_at_round) {
      ++p.stalled_rounds;
    } else {
      p.stalled_rounds = 0;
    }
    p.match_at_round = p.match;
    if (p.snapshotting) {
      if (p.tx->deadline == TimePoint{}) {
        p.tx->deadline = now + milliseconds(config_.snapshot_timeout_ms);
      } else if (now >= p.tx->deadline) {
        // No progress: re-drive from the last acknowledged offset (the
        // follower resumes: same transfer identity).
        p.tx->deadline = now + milliseconds(config_.snapshot_timeout_ms);
        send_snapshot(p);
      }
      continue;
    }
    if (p.stalled_rounds >= kStalledRoundsMax) {
      p.stalled_rounds = 0;
      p.replicating = false;
      p.probe_sent = false;
      p.next = p.match + 1;
      p.inflight.clear();
      p.inflight_bytes = 0;
      send_append(p, true);
    }
  }
  // Reads waiting for a round sent after they arrived get this one.
  if (read_round_wanted_) {
    for (PendingRead& r : reads_) {
      if (!r.confirmed && r.round == 0) r.round = round_;
    }
    read_round_ = round_;
    read_round_wanted_ = false;
  }
  // Single-voter group: the round is acknowledged by a quorum (itself) now.
  if (self_quorum_ && !reads_.empty()) advance_reads(now);
}

void Raft::handle_heartbeat_reply(const Message& m, const HeartbeatReply& rep, TimePoint now) {
  if (role_ != Role::kLeader) return;
  Progress* pp = progress(m.from);
  if (pp == nullptr) return;
  Progress& p = *pp;
  heard_from(p, now);
  if (rep.round <= round_ && rep.round > p.acked_round) {
    p.acked_round = rep.round;
    // Only the newest quorum-acknowledged round and later ones can still
    // give a lease: forget older send times.
    rounds_.drop_older_than(quorum_round());
  }
  if (p.match < last_index_) {
    if (!p.replicating) {
      // A probe may have been lost: retry once per heartbeat round.
      p.probe_sent = false;
      send_append(p, true);
    } else if (p.next <= last_index_) {
      // Entries not yet sent (a failed storage read, a full window that has
      // since drained): send what the window allows.
      send_append(p, false);
    }
  }
  if (!reads_.empty()) {
    advance_reads(now);
    // Reads that arrived after the last read round was sent share the next
    // one, sent as soon as that round is confirmed (one round in flight).
    if (read_round_wanted_ && quorum_round() >= read_round_) send_heartbeat_round(now);
  }
}

// --- commitment and proposals -------------------------------------------------------------

void Raft::maybe_commit(TimePoint now) {
  if (role_ != Role::kLeader) return;
  // lease: a new leader makes no write visible until the promises its voters
  // made to earlier leaders have passed, widened for drift.
  if (now < leader_wait_until_) {
    leader_waiting_ = true;
    return;
  }
  leader_waiting_ = false;
  // The leader counts itself only once durable.
  Index c = quorum_of(durable_index_, [](const Progress& p) { return p.match; });
  // Commitment only by counting replicas of current-term entries; earlier
  // entries commit with them.
  if (c <= commit_) return;
  auto t = try_term_at(c);
  if (!t || *t != term_) return;  // (unreadable: retried on the next ack or tick)
  Index old = commit_;
  commit_ = c;
  // This term's proposals (after its no-op, which was never counted) leave
  // the uncommitted budget.
  for (Index i = std::max(old + 1, term_start_index_ + 1); i <= c; ++i) {
    const Entry& e = mem_[i - mem_first_];
    if (e.type != EntryType::kNormal) continue;  // configuration entries are not budgeted
    uncommitted_bytes_ -= std::min(uncommitted_bytes_, entry_bytes(e));
  }
  on_commit_advanced(now);
}

void Raft::on_commit_advanced(TimePoint now) {
  while (!proposals_.empty() && proposals_.front().index <= commit_) {
    const PendingProposal& pp = proposals_.front();
    ready_.proposals.push_back(ProposalResult{pp.id, pp.index, pp.term, std::nullopt});
    out_mask_ |= kOutProposals;
    proposals_.pop_front();
  }
  if (!reads_.empty()) advance_reads(now);
  // Deferred to take_ready: proposing a configuration entry rebuilds peers_,
  // which callers up the stack may be holding a Progress& into.
  if (role_ == Role::kLeader) membership_check_ = true;
}

base::Result<Index> Raft::propose(std::string data, uint64_t proposal_id, TimePoint now,
                                  TimePoint deadline) {
  last_now_ = std::max(last_now_, now);
  using base::ErrorKind;
  if (role_ != Role::kLeader) {
    return base::Error(ErrorKind::kNotLeader, "not the leader", leader_);
  }
  // Before the check-quorum test below: waking refreshes it from liveness.
  wake(now);
  if (deadline <= now) return base::err(ErrorKind::kTimedOut, "deadline already passed");
  if (transfer_target_ != kNoNode) {
    return base::err(ErrorKind::kBusy, "leadership transfer to {} in progress", transfer_target_);
  }
  if (check_quorum_ && !quorum_active(now)) {
    return base::err(ErrorKind::kNoQuorum, "leader has not heard from a quorum within {} ms",
                     config_.check_quorum_window().count() / 1'000'000);
  }
  if (data.size() > config_.append_bytes_max) {
    return base::err(ErrorKind::kInvalidArgument, "command of {} bytes exceeds {}", data.size(),
                     config_.append_bytes_max);
  }
  uint64_t bytes = data.size() + kEntryOverheadBytes;
  if (uncommitted_bytes_ > 0 && uncommitted_bytes_ + bytes > config_.uncommitted_bytes_max) {
    return base::err(ErrorKind::kBusy, "uncommitted bytes at bound {}",
                     config_.uncommitted_bytes_max);
  }
  if (proposals_.size() >= config_.proposals_pending_max) {
    return base::err(ErrorKind::kBusy, "{} proposals pending", proposals_.size());
  }
  Index index = last_index_ + 1;
  append_local(Entry{term_, index, EntryType::kNormal, std::move(data)}, now);
  proposals_.push_back(PendingProposal{proposal_id, index, term_, deadline, bytes});
  earliest_deadline_ = std::min(earliest_deadline_, deadline);
  uncommitted_bytes_ += bytes;
  appends_dirty_ = true;  // batched: sent at the next take_ready
  if (self_quorum_) maybe_commit(now);
  return index;
}

void Raft::expire_proposals(TimePoint now) {
  TimePoint earliest = TimePoint::max();
  auto out = proposals_.begin();
  for (auto it = proposals_.begin(); it != proposals_.end(); ++it) {
    if (it->deadline <= now) {
      // Appended, so it may still commit later: outcome unknown.
      out_mask_ |= kOutProposals;
      ready_.proposals.push_back(ProposalResult{
          it->id, it->index, it->term,
          base::err(base::ErrorKind::kOutcomeUnknown,
                    "deadline passed after the command was appended at {}", it->index)});
    } else {
      earliest = std::min(earliest, it->deadline);
      *out++ = *it;
    }
  }
  proposals_.erase(out, proposals_.end());
  earliest_deadline_ = earliest;
}

void Raft::fail_pending(TimePoint now, NodeId leader_hint) {
  for (const PendingProposal& pp : proposals_) {
    out_mask_ |= kOutProposals;
    ready_.proposals.push_back(ProposalResult{
        pp.id, pp.index, pp.term,
        base::Error(base::ErrorKind::kOutcomeUnknown,
                    fmt::format("leadership lost after the command was appended at {}", pp.index),
                    leader_hint)});
  }
  proposals_.clear();
  earliest_deadline_ = TimePoint::max();
  for (const PendingRead& r : reads_) {
    out_mask_ |= kOutReads;
    ready_.reads.push_back(ReadResult{
        r.id, r.mode, 0, false,
        base::Error(base::ErrorKind::kNotLeader, "leadership lost before the read", leader_hint)});
  }
  reads_.clear();
  read_round_wanted_ = false;
  uncommitted_bytes_ = 0;
}

// --- reads and leases -----------------------------------------------------------------

uint64_t Raft::quorum_round() const {
  return quorum_of(round_, [](const Progress& p) { return p.acked_round; });
}

TimePoint Raft::lease_until() const {
  // lease: starts at the SEND time of the newest round a quorum acknowledged
  // (followers' promises started at or after their receipt of it).
  uint64_t r = quorum_round();
  // lease: after a configuration entry, only rounds sent after it count.
  if (r == 0 || r < lease_min_round_) return TimePoint{};
  if (const RoundSent* sent = rounds_.find(r)) return sent->sent + milliseconds(config_.lease_ms);
  return TimePoint{};  // too old to be remembered: too old to give a lease
}

bool Raft::lease_valid(TimePoint now) const {
  if (role_ != Role::kLeader || lease_ended_) return false;
  if (now < leader_wait_until_) return false;
  if (config_.unsafe_lease_read_skips_clock_check_for_testing) return true;
  return now < lease_until();
}

base::Status Raft::read(ReadMode mode, uint64_t request_id, TimePoint now) {
  if (mode == ReadMode::kStaleNoGuarantee) {
    // No guarantee at all: whatever this replica has applied.
    ready_.reads.push_back(ReadResult{request_id, mode, applied_, false, std::nullopt});
    out_mask_ |= kOutReads;
    return {};
  }
  if (role_ != Role::kLeader) {
    return base::Error(base::ErrorKind::kNotLeader, "linearizable read on a non-leader", leader_);
  }
  // lease: a quiesced leader wakes first; lease_min_round_ (set when it
  // quiesced) then makes the lease check below fail until a round sent
  // from now on is acknowledged, so this read waits for that round.
  wake(now);
  if (reads_.size() >= config_.reads_pending_max) {
    return base::err(base::ErrorKind::kBusy, "{} reads pending", reads_.size());
  }
  // The read index: the commit index seen on arrival, but never below this
  // term's no-op (before it commits, commit_ may lag what earlier leaders
  // committed).
  PendingRead r{.id = request_id, .mode = mode, .index = std::max(commit_, term_start_index_)};
  if (mode == ReadMode::kLease && lease_valid(now)) {
    // lease: checked against `now`, read by the driver after the read arrived.
    r.confirmed = true;
    r.via_lease = true;
  } else {
    read_round_wanted_ = true;
  }
  reads_.push_back(r);
  // Start a round now unless one sent for earlier reads is still unconfirmed;
  // then this read shares the next one.
  if (read_round_wanted_ && quorum_round() >= read_round_) send_heartbeat_round(now);
  advance_reads(now);
  return {};
}

void Raft::advance_reads(TimePoint now) {
  uint64_t qr = quorum_round();
  auto out = reads_.begin();
  for (auto it = reads_.begin(); it != reads_.end(); ++it) {
    if (!it->confirmed && it->round != 0 && it->round <= qr) it->confirmed = true;
    // Served only once a current-term entry is committed (index >= term
    // start) and the state machine has applied the read index.
    if (it->confirmed && commit_ >= it->index && applied_ >= it->index) {
      ready_.reads.push_back(ReadResult{it->id, it->mode, it->index, it->via_lease, std::nullopt});
      out_mask_ |= kOutReads;
    } else {
      *out++ = *it;
    }
  }
  reads_.erase(out, reads_.end());
}

// --- leadership transfer ----------------------------------------------------------------

base::Status Raft::transfer_leadership(NodeId target, TimePoint now) {
  if (role_ != Role::kLeader) {
    return base::Error(base::ErrorKind::kNotLeader, "not the leader", leader_);
  }
  wake(now);
  if (target == id_ || progress(target) == nullptr || !quorum_.contains(target)) {
    return base::err(base::ErrorKind::kInvalidArgument, "cannot transfer to {}", target);
  }
  if (transfer_target_ != kNoNode) {
    return base::err(base::ErrorKind::kBusy, "transfer to {} in progress", transfer_target_);
  }
  transfer_target_ = target;
  transfer_deadline_ = now + milliseconds(config_.election_timeout_max_ms);
  timeout_now_sent_ = false;
  Progress& p = *progress(target);
  if (p.match < last_index_) {
    // Catch the target up now rather than waiting for lost appends to be
    // detected: probe from its match index (a transfer is rare; resending
    // what may still be in flight is cheap).
    p.replicating = false;
    p.probe_sent = false;
    p.next = p.match + 1;
    p.inflight.clear();
    p.inflight_bytes = 0;
    send_append(p, true);
  }
  maybe_send_timeout_now(now);
  return {};
}

void Raft::maybe_send_timeout_now(TimePoint now) {
  if (transfer_target_ == kNoNode || timeout_now_sent_) return;
  Progress* p = progress(transfer_target_);
  if (p == nullptr || p->match < last_index_) return;
  // lease: end this node's lease for the rest of the term BEFORE TimeoutNow
  // leaves (it may be delayed or duplicated; the flag is never cleared in
  // this term, even if the transfer fails).
  lease_ended_ = true;
  Duration wait_left = leader_wait_until_ > now ? leader_wait_until_ - now : Duration(0);
  send(transfer_target_, TimeoutNow{.leader_wait_remaining_ns = wait_left.count()},
       SendAfter::kNow);
  timeout_now_sent_ = true;
}

void Raft::handle_timeout_now(const Message& m, const TimeoutNow& tn, TimePoint now) {
  if (!is_voter_ || role_ == Role::kLeader) return;
  if (m.from != leader_) return;  // only the leader we follow can hand over
  // Skip pre-vote: the leader asked for this election.
  become_candidate(now, m.from, m.term, ns(std::max<int64_t>(0, tn.leader_wait_remaining_ns)));
}

// --- membership -------------------------------------------------------------------------

void Raft::apply_membership(TimePoint now) {
  ++configs_version_;
  const Membership& m = configs_.back().membership;
  quorum_ = m.quorum();
  is_voter_ = m.is_voter(id_);
  simple_majority_ = is_voter_ && !m.joint() && m.learners.empty();
  self_quorum_ = !m.joint() && m.voters.size() == 1 && m.voters[0] == id_;
  // Keep the progress of members that stay; new ones start probing from the
  // end of the log (as leader: at once).
  std::vector<NodeId> others = m.others(id_);
  for (Progress& p : peers_) {
    if (!std::binary_search(others.begin(), others.end(), p.id)) end_snapshot_transfer(p);
  }
  std::vector<Progress> next;
  next.reserve(others.size());
  std::vector<size_t> fresh;
  for (NodeId id : others) {
    if (Progress* p = progress(id)) {
      next.push_back(std::move(*p));
    } else {
      next.push_back(Progress{.id = id, .next = last_index_ + 1});
      fresh.push_back(next.size() - 1);
    }
  }
  peers_ = std::move(next);
  peer_count_ = 0;
  for (const Progress& p : peers_) {
    if (peer_count_ < kPeersInline) peer_ids_[peer_count_] = p.id;
    ++peer_count_;
  }
  if (role_ == Role::kLeader) {
    // A member new to this leader gets the same grace as every peer at
    // election (one check-quorum window); add_member() brings voters in as
    // learners first, so a voter is normally heard from before it counts.
    for (size_t i : fresh) {
      peers_[i].last_heard = now;
      send_append(peers_[i], true);
    }
    // Recompute which quorum was heard from under the new rule.
    if (!peers_.empty()) {
      heard_from(peers_[0], peers_[0].last_heard);
    } else {
      quorum_heard_ = now;
    }
  } else if (!is_voter_ && (role_ == Role::kPreCandidate || role_ == Role::kCandidate)) {
    // No longer a voter: the campaign is void.
    role_ = Role::kFollower;
  }
}

void Raft::trim_configs() {
  // Entries at or below the commit index are never truncated: only the
  // latest of them matters.
  size_t keep = 0;
  while (keep + 1 < configs_.size() && configs_[keep + 1].index <= commit_)
    ++keep;
  if (keep > 0) {
    configs_.erase(configs_.begin(), configs_.begin() + static_cast<ptrdiff_t>(keep));
    ++configs_version_;
  }
}

bool Raft::member_change_in_progress() const {
  const Membership& m = membership();
  return configs_.back().index > commit_ || m.joint() || !m.promote.empty();
}

base::Status Raft::check_can_change(bool abandoning) const {
  using base::ErrorKind;
  if (role_ != Role::kLeader) return base::Error(ErrorKind::kNotLeader, "not the leader", leader_);
  // An earlier leader's change may sit uncommitted in this log; proposing
  // another before it is settled could let both commit with disjoint
  // quorums. The no-op of this term commits (or drops) it.
  if (commit_ < term_start_index_) {
    return base::err(ErrorKind::kBusy,
                     "membership change refused: this leader has not committed an entry of "
                     "term {} yet",
                     term_);
  }
  if (transfer_target_ != kNoNode) {
    return base::err(ErrorKind::kBusy, "leadership transfer to {} in progress", transfer_target_);
  }
  if (!abandoning && member_change_in_progress()) {
    return base::err(ErrorKind::kBusy,
                     "a membership change is in progress ({}, entry {}, commit {}); one at a time",
                     to_string(membership()), configs_.back().index, commit_);
  }
  return {};
}

base::Result<Index> Raft::propose_membership(Membership next, TimePoint now,
                                             std::span<const MemberAddress> addresses) {
  // Sorted first: callers push the changed id at the end of a list, and
  // contains() and set_address() search sorted lists (unsorted, a promoted
  // learner with a lower id than some voter lost its address here).
  next.normalize();
  for (const MemberAddress& a : addresses) {
    if (a.id != kNoNode && next.contains(a.id)) next.set_address(a.id, a.address);
  }
  next.drop_addresses_of_non_members();
  next.normalize();
  if (auto v = next.validate(); !v.ok()) return v.error();
  if (next.voters.empty()) {
    return base::err(base::ErrorKind::kInvalidArgument, "a configuration needs a voter");
  }
  Index index = last_index_ + 1;
  // Takes effect here, on append (append_local -> apply_membership).
  append_local(Entry{term_, index, EntryType::kConfig, next.encode()}, now);
  appends_dirty_ = true;
  // lease: the quorum rule just changed. Rounds acknowledged so far were
  // counted under the old one: the lease lapses until a round sent after
  // this append is acknowledged under the new rule, and reads still waiting
  // for an older round wait for that one instead. The round goes out now.
  lease_min_round_ = round_ + 1;
  for (PendingRead& r : reads_) {
    if (!r.confirmed) r.round = 0;
  }
  read_round_wanted_ = read_round_wanted_ || !reads_.empty();
  send_heartbeat_round(now);
  if (self_quorum_) maybe_commit(now);
  return index;
}

void Raft::maybe_advance_membership(TimePoint now) {
  if (role_ != Role::kLeader || commit_ < term_start_index_) return;
  const Membership& m = membership();
  if (configs_.back().index > commit_) return;  // the latest change is not committed yet
  if (m.joint()) {
    // Automatic leave: C_old,new committed, C_new alone from here.
    Membership leave = m;
    leave.voters_outgoing.clear();
    (void)propose_membership(std::move(leave), now);
    return;
  }
  if (!is_voter_) {
    // C_new without this node is committed: hand over to a caught-up voter
    // if there is one (ending the lease first, as a transfer does), then
    // stop leading.
    const Progress* best = nullptr;
    for (const Progress& p : peers_) {
      if (quorum_.contains(p.id) && p.match == last_index_ && (!best || p.id < best->id)) best = &p;
    }
    if (best != nullptr) {
      lease_ended_ = true;
      Duration wait_left = leader_wait_until_ > now ? leader_wait_until_ - now : Duration(0);
      send(best->id, TimeoutNow{.leader_wait_remaining_ns = wait_left.count()}, SendAfter::kNow);
    }
    step_down_as_leader(now, "removed from the configuration");
    return;
  }
  for (NodeId id : m.promote) {
    const Progress* p = progress(id);
    if (p == nullptr || p->match + config_.promote_lag_entries_max < commit_) continue;
    // It must hold the configuration entry naming it: promoted before that,
    // it knows no peers and drops their vote requests (step()), so a C_new
    // that needs its vote could never elect a leader again.
    if (p->match < membership_index()) continue;
    // Caught up: C_old -> C_old,new with the learner in C_new.
    Membership joint = m;
    joint.voters_outgoing = m.voters;
    joint.voters.push_back(id);
    joint.learners.erase(std::find(joint.learners.begin(), joint.learners.end(), id));
    joint.promote.erase(std::find(joint.promote.begin(), joint.promote.end(), id));
    (void)propose_membership(std::move(joint), now);
    return;
  }
}

base::Result<Index> Raft::add_member(NodeId id, TimePoint now,
                                     std::span<const MemberAddress> addresses) {
  if (role_ == Role::kLeader) wake(now);  // a configuration change needs rounds
  NORI_TRY(check_can_change(false));
  const Membership& m = membership();
  if (id == kNoNode || m.is_voter(id)) {
    return base::err(base::ErrorKind::kInvalidArgument, "{} is already a voter", id);
  }
  Membership next = m;
  if (!m.is_learner(id)) next.learners.push_back(id);
  next.promote.push_back(id);
  return propose_membership(std::move(next), now, addresses);
}

base::Result<Index> Raft::add_learner(NodeId id, TimePoint now,
                                      std::span<const MemberAddress> addresses) {
  if (role_ == Role::kLeader) wake(now);  // a configuration change needs rounds
  NORI_TRY(check_can_change(false));
  const Membership& m = membership();
  if (id == kNoNode || m.contains(id)) {
    return base::err(base::ErrorKind::kInvalidArgument, "{} is already a member", id);
  }
  Membership next = m;
  next.learners.push_back(id);
  return propose_membership(std::move(next), now, addresses);
}

base::Result<Index> Raft::remove_member(NodeId id, TimePoint now,
                                        std::span<const MemberAddress> addresses) {
  if (role_ == Role::kLeader) wake(now);  // a configuration change needs rounds
  using base::ErrorKind;
  const Membership& m = membership();
  // Removing a learner whose promotion is pending is how that promotion is
  // abandoned: allowed while it is "in progress".
  bool pending_learner = m.is_learner(id) && configs_.back().index <= commit_ && !m.joint() &&
                         std::find(m.promote.begin(), m.promote.end(), id) != m.promote.end();
  NORI_TRY(check_can_change(pending_learner));
  if (!m.contains(id)) return base::err(ErrorKind::kInvalidArgument, "{} is not a member", id);
  Membership next = m;
  if (m.is_learner(id)) {
    // Learners are in no quorum: one entry, no joint step.
    next.learners.erase(std::find(next.learners.begin(), next.learners.end(), id));
    next.promote.erase(std::remove(next.promote.begin(), next.promote.end(), id),
                       next.promote.end());
    return propose_membership(std::move(next), now, addresses);
  }
  if (m.voters.size() == 1) {
    return base::err(ErrorKind::kInvalidArgument, "cannot remove the last voter {}", id);
  }
  if (id == id_) {
    // Hand over first to a caught-up voter (holding this leader's whole log
    // and heard from within the check-quorum window): the new leader runs
    // the change with every voter counting.
    const Progress* best = nullptr;
    for (const Progress& p : peers_) {
      if (!quorum_.contains(p.id) || p.match < last_index_) continue;
      if (now - check_quorum_window_ > p.last_heard) continue;
      if (best == nullptr || p.id < best->id) best = &p;
    }
    if (best != nullptr) {
      NodeId target = best->id;
      NORI_TRY(transfer_leadership(target, now));
      return base::Error(
          ErrorKind::kNotLeader,
          fmt::format("handing leadership to {} before removing {}; retry there", target, id),
          target);
    }
    // No caught-up voter: run the change without counting this node in C_new.
  }
  next.voters_outgoing = m.voters;
  next.voters.erase(std::find(next.voters.begin(), next.voters.end(), id));
  return propose_membership(std::move(next), now, addresses);
}

base::Result<Index> Raft::abandon_member_change(TimePoint now) {
  if (role_ == Role::kLeader) wake(now);  // a configuration change needs rounds
  NORI_TRY(check_can_change(true));
  const Membership& m = membership();
  Membership next = m;
  if (m.joint()) {
    // Back to C_old; members only in C_new leave altogether.
    next.voters = m.voters_outgoing;
    next.voters_outgoing.clear();
  } else if (!m.promote.empty()) {
    for (NodeId id : m.promote)
      next.learners.erase(std::find(next.learners.begin(), next.learners.end(), id));
    next.promote.clear();
  } else {
    return base::err(base::ErrorKind::kInvalidArgument, "no membership change to abandon");
  }
  return propose_membership(std::move(next), now);
}

// --- snapshots ---------------------------------------------------------------------------

SnapshotWork& Raft::snapshot_work() {
  if (!ready_.snapshot) ready_.snapshot = std::make_unique<SnapshotWork>();
  out_mask_ |= kOutSnapshot;
  return *ready_.snapshot;
}

SnapshotMeta Raft::applied_meta() const {
  auto t = try_term_at(applied_);
  return SnapshotMeta{applied_, t ? *t : 0, applied_membership_};
}

void Raft::maybe_request_snapshot() {
  if (snapshot_requested_ || applied_ <= snapshot_.index) return;
  bool due = snapshot_triggered_ || applied_ - snapshot_.index >= config_.snapshot_entries_max ||
             log_bytes_since_snapshot_ >= config_.snapshot_log_bytes_max;
  if (!due) return;
  auto t = try_term_at(applied_);
  if (!t) return;  // unreadable: asked again at the next apply
  // The state machine is at exactly applied_ now: the driver reports
  // applied() after applying and before its next take_ready, which carries
  // this request ahead of any newly committed entries.
  snapshot_work().request = SnapshotMeta{applied_, *t, applied_membership_};
  out_mask_ |= kOutSnapshot;
  snapshot_requested_ = true;
  snapshot_triggered_ = false;
}

void Raft::trigger_snapshot() {
  snapshot_triggered_ = true;
  maybe_request_snapshot();
}

void Raft::snapshot_taken(const SnapshotMeta& meta, TimePoint now) {
  (void)now;
  snapshot_requested_ = false;
  if (meta.index <= snapshot_.index) return;  // older than what we have
  NORI_ASSERT(meta.index <= applied_, "snapshot {} beyond the applied index {}", meta.index,
              applied_);
  snapshot_ = meta;
  log_bytes_since_snapshot_ = 0;
  // Keep snapshot_keep_entries entries behind the snapshot for followers
  // that lag a little; everything older may go.
  uint64_t keep = config_.snapshot_keep_entries;
  Index before = meta.index + 1 > keep ? meta.index + 1 - keep : 1;
  if (before <= storage_.first_index()) return;
  while (!mem_.empty() && mem_first_ < before) {
    mem_bytes_ -= entry_bytes(mem_.front());
    mem_.pop_front();
    ++mem_first_;
  }
  mem_first_ = std::max(mem_first_, before);
  snapshot_work().compact_before = before;
  out_mask_ |= kOutSnapshot;
}

void Raft::send_snapshot(Progress& p) {
  if (snapshot_.index == 0) return;  // nothing to send (cannot happen once compacted)
  if (!p.snapshotting) {
    p.snapshotting = true;
    p.tx = std::make_unique<SnapshotTransfer>();
    p.tx->snap = snapshot_;
  }
  p.replicating = false;
  p.probe_sent = false;
  p.inflight.clear();
  p.inflight_bytes = 0;
  snapshot_work().sends.push_back(SnapshotSend{p.id, term_, p.tx->snap, p.tx->offset, false});
  out_mask_ |= kOutSnapshot;
}

void Raft::end_snapshot_transfer(Progress& p) {
  if (!p.snapshotting) return;
  p.snapshotting = false;
  snapshot_work().sends.push_back(
      SnapshotSend{p.id, term_, std::move(p.tx->snap), p.tx->offset, true});
  p.tx.reset();
  out_mask_ |= kOutSnapshot;
}

void Raft::handle_snapshot_reply(const Message& m, const SnapshotReply& rep, TimePoint now) {
  if (role_ != Role::kLeader) return;
  Progress* pp = progress(m.from);
  if (pp == nullptr) return;
  Progress& p = *pp;
  heard_from(p, now);
  if (rep.done) {
    // Installed, or the follower already had it committed: its log matches
    // ours up to match_index (a committed prefix). Resume with a probe.
    if (p.snapshotting && (rep.index != p.tx->snap.index || rep.index_term != p.tx->snap.term))
      return;
    end_snapshot_transfer(p);
    p.match = std::max(p.match, std::min(rep.match_index, last_index_));
    p.next = p.match + 1;
    p.replicating = false;
    p.probe_sent = false;
    maybe_commit(now);
    send_append(p, true);
    return;
  }
  if (!p.snapshotting || rep.index != p.tx->snap.index || rep.index_term != p.tx->snap.term) return;
  // Progress (or a restart at a lower offset: the follower lost its partial
  // file). Either way, send from where the follower is.
  p.tx->offset = rep.next_offset;
  p.tx->deadline = now + milliseconds(config_.snapshot_timeout_ms);
  send_snapshot(p);
}

void Raft::handle_snapshot_chunk(const Message& m, SnapshotChunk& c, TimePoint now) {
  NORI_ASSERT(role_ != Role::kLeader, "two leaders in term {}: {} and {}", term_, id_, m.from);
  if (role_ != Role::kFollower || leader_ != m.from) become_follower(term_, m.from, now);
  last_leader_contact_ = now;
  reset_election_deadline(now);
  extend_promise(m.from, now);
  auto reply = [&](SnapshotReply r) {
    r.index = c.index;
    r.index_term = c.index_term;
    send(m.from, r, SendAfter::kNow);
  };
  if (c.index <= commit_) {
    // Nothing to install: our committed prefix already covers it.
    reply(SnapshotReply{.done = true, .match_index = commit_});
    return;
  }
  auto mem = Membership::decode(c.membership);
  if (!mem.ok() || c.index_term == 0 || c.index_term > m.term) return;  // malformed
  bool same =
      recv_.meta.index == c.index && recv_.meta.term == c.index_term && recv_.leader_term == m.term;
  if (!same) {
    if (recv_.complete) return;  // installing another one; its answer follows
    if (c.offset != 0) {
      // Resumable only for the same transfer: start over.
      reply(SnapshotReply{.next_offset = 0});
      return;
    }
    recv_ = Receiving{};
    recv_.leader_term = m.term;
    recv_.from = m.from;
    recv_.meta = SnapshotMeta{c.index, c.index_term, std::move(*mem)};
    recv_.total_bytes = c.total_bytes;
  }
  if (c.total_bytes != recv_.total_bytes) return;     // malformed: the file changed size
  if (recv_.complete || recv_.chunk_pending) return;  // one chunk at a time
  if (c.offset != recv_.written) {
    reply(SnapshotReply{.next_offset = recv_.written});
    return;
  }
  recv_.chunk_pending = true;
  recv_.deadline = now + 2 * milliseconds(config_.snapshot_timeout_ms);
  snapshot_work().chunks.push_back(SnapshotChunkIn{m.from, m.term, std::move(c)});
  out_mask_ |= kOutSnapshot;
}

void Raft::snapshot_chunk_written(const SnapshotMeta& meta, Term leader_term, uint64_t end_offset,
                                  TimePoint now) {
  if (!recv_.chunk_pending || recv_.meta.index != meta.index || recv_.meta.term != meta.term ||
      recv_.leader_term != leader_term || end_offset < recv_.written) {
    return;
  }
  recv_.chunk_pending = false;
  recv_.written = end_offset;
  recv_.deadline = now + 2 * milliseconds(config_.snapshot_timeout_ms);
  if (end_offset >= recv_.total_bytes) {
    // The whole file is written: the driver verifies and installs it; the
    // answer is snapshot_installed's (or a restart on failure).
    recv_.complete = true;
    return;
  }
  if (leader_term != term_) return;  // a newer term: the new leader starts over
  send(recv_.from,
       SnapshotReply{.index = meta.index, .index_term = meta.term, .next_offset = end_offset},
       SendAfter::kNow);
}

void Raft::snapshot_receive_failed(TimePoint now) {
  (void)now;
  if (recv_.meta.index == 0) return;
  NodeId from = recv_.from;
  SnapshotMeta meta = recv_.meta;
  Term t = recv_.leader_term;
  recv_ = Receiving{};
  if (t == term_) {
    send(from, SnapshotReply{.index = meta.index, .index_term = meta.term, .next_offset = 0},
         SendAfter::kNow);
  }
}

void Raft::snapshot_installed(const SnapshotMeta& meta, TimePoint now) {
  // The driver's install (raft/storage.h, steps 2-4) spans disk writes;
  // meanwhile this replica may have won an election with votes it asked for
  // before the install began. Its log then already holds every committed
  // entry, so the install keeps it (below); a leader, though, must not have
  // its log and configuration replaced under its followers' progress:
  // stepping down is always safe (pending proposals end outcome-unknown,
  // the next leader brings this replica up to date).
  if (role_ == Role::kLeader) step_down_as_leader(now, "a snapshot install finished");
  NORI_ASSERT(meta.index > 0 && meta.term > 0, "installing an empty snapshot");
  // The storage did the same (raft/storage.h, install step 2): keep the
  // suffix only if it continues the snapshot.
  auto t = meta.index <= last_index_ ? try_term_at(meta.index) : std::nullopt;
  bool keep = t && *t == meta.term;
  if (keep) {
    while (!mem_.empty() && mem_first_ <= meta.index) {
      mem_bytes_ -= entry_bytes(mem_.front());
      mem_.pop_front();
      ++mem_first_;
    }
    mem_first_ = std::max(mem_first_, meta.index + 1);
    durable_index_ = std::max(durable_index_, meta.index);
    // The snapshot's configuration, then the configuration entries of the
    // kept suffix (any at or below the snapshot are covered by it).
    std::vector<ConfigAt> kept{ConfigAt{meta.index, meta.membership}};
    for (ConfigAt& c : configs_) {
      if (c.index > meta.index) kept.push_back(std::move(c));
    }
    configs_ = std::move(kept);
  } else {
    mem_.clear();
    mem_bytes_ = 0;
    mem_first_ = meta.index + 1;
    last_index_ = meta.index;
    last_term_ = meta.term;
    durable_index_ = meta.index;
    // Entries not yet handed to the driver would land after the reset.
    ready_.entries.clear();
    ready_.truncate_from.reset();
    configs_.clear();
    configs_.push_back(ConfigAt{meta.index, meta.membership});
  }
  // The state machine is exactly at meta.index now.
  commit_ = std::max(commit_, meta.index);
  applied_ = apply_sent_ = meta.index;
  ready_.committed.clear();
  applied_membership_ = meta.membership;
  apply_configs_.clear();
  for (const ConfigAt& c : configs_) {
    if (c.index > meta.index) apply_configs_.push_back(c);
  }
  apply_membership(now);
  if (meta.index > snapshot_.index) snapshot_ = meta;
  log_bytes_since_snapshot_ = 0;
  NodeId from = recv_.meta.index == meta.index ? recv_.from : leader_;
  Term t_leader = recv_.leader_term;
  recv_ = Receiving{};
  if (from != kNoNode && (t_leader == 0 || t_leader == term_)) {
    send(from,
         SnapshotReply{
             .index = meta.index, .index_term = meta.term, .done = true, .match_index = meta.index},
         SendAfter::kNow);
  }
}

// --- log --------------------------------------------------------------------------------

std::optional<Term> Raft::try_term_at(Index index) const {
  if (index == 0) return Term{0};
  if (index > last_index_) return std::nullopt;
  if (index >= mem_first_) return mem_[index - mem_first_].term;
  auto t = storage_.term(index);
  if (!t.ok()) return std::nullopt;
  return *t;
}

Term Raft::term_at(Index index) const {
  auto t = try_term_at(index);
  NORI_ASSERT(t.has_value(), "term of index {} unavailable (last {}, mem from {})", index,
              last_index_, mem_first_);
  return *t;
}

void Raft::append_local(Entry e, TimePoint now) {
  NORI_ASSERT(e.index == last_index_ + 1, "append {} after {}", e.index, last_index_);
  NORI_ASSERT(e.term >= last_term_, "entry term {} below last term {}", e.term, last_term_);
  log_bytes_since_snapshot_ += entry_bytes(e);
  appended_bytes_ += entry_bytes(e);
  last_index_ = e.index;
  last_term_ = e.term;
  mem_bytes_ += entry_bytes(e);
  ready_.entries.push_back(e);
  out_mask_ |= kOutEntries;
  if (e.type == EntryType::kConfig) {
    // Takes effect on append (decoded by the caller's validation or by
    // propose_membership, so it cannot fail here).
    auto m = Membership::decode(e.data);
    NORI_ASSERT(m.ok(), "configuration entry {} does not decode", e.index);
    configs_.push_back(ConfigAt{e.index, std::move(*m)});
    mem_.push_back(std::move(e));
    apply_membership(now);
    return;
  }
  mem_.push_back(std::move(e));
}

void Raft::truncate_from(Index index, Term term_before, TimePoint now) {
  NORI_ASSERT(index > commit_, "truncating committed entry {} (commit {})", index, commit_);
  NORI_ASSERT(index <= last_index_);
  if (index >= mem_first_) {
    while (mem_first_ + mem_.size() > index) {
      mem_bytes_ -= entry_bytes(mem_.back());
      mem_.pop_back();
    }
  } else {
    mem_.clear();
    mem_bytes_ = 0;
    mem_first_ = index;
  }
  last_index_ = index - 1;
  auto known = try_term_at(last_index_);
  NORI_ASSERT(!known || *known == term_before, "term before {} is {}, caller says {}", index,
              known ? *known : 0, term_before);
  last_term_ = term_before;
  durable_index_ = std::min(durable_index_, last_index_);
  // Entries of this Ready at or beyond the cut never reach the disk.
  while (!ready_.entries.empty() && ready_.entries.back().index >= index)
    ready_.entries.pop_back();
  ready_.truncate_from = ready_.truncate_from ? std::min(*ready_.truncate_from, index) : index;
  out_mask_ |= kOutEntries;
  // Truncated configuration entries no longer count: the previous one is in
  // effect again (configs_[0] is at or below commit, never truncated).
  if (configs_.back().index >= index) {
    while (configs_.back().index >= index) {
      NORI_ASSERT(configs_.size() > 1, "truncating below the base configuration");
      configs_.pop_back();
    }
    apply_membership(now);
  }
}

base::Status Raft::fetch_entries(Index lo, Index hi, uint64_t bytes_max, uint32_t count_max,
                                 std::vector<Entry>& out) const {
  uint64_t bytes = 0;
  uint32_t count = 0;
  Index i = lo;
  if (i < mem_first_) {
    // Older entries come from durable storage.
    Index stop = std::min(hi, mem_first_);
    size_t before = out.size();
    if (auto st = storage_.entries(i, stop, bytes_max, out); !st.ok()) {
      out.resize(before);
      return st;
    }
    for (size_t k = before; k < out.size(); ++k)
      bytes += entry_bytes(out[k]);
    count = static_cast<uint32_t>(out.size() - before);
    if (count > count_max) {
      out.resize(before + count_max);
      return {};
    }
    i += count;
    if (i < stop) return {};  // storage stopped at the byte bound
  }
  for (; i < hi && count < count_max; ++i, ++count) {
    const Entry& e = mem_[i - mem_first_];
    uint64_t b = entry_bytes(e);
    if (count > 0 && bytes + b > bytes_max) break;
    bytes += b;
    out.push_back(e);
  }
  return {};
}

void Raft::trim_log_cache() {
  // Keep recent entries for followers and apply; entries that are durable and
  // applied may be dropped beyond the cache bound (LogStorage serves them).
  Index evictable = std::min(applied_, durable_index_);
  while (mem_bytes_ > config_.log_cache_bytes_max && !mem_.empty() && mem_first_ <= evictable) {
    mem_bytes_ -= entry_bytes(mem_.front());
    mem_.pop_front();
    ++mem_first_;
  }
}

}  // namespace nori::raft
