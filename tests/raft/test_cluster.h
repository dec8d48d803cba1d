// A tiny deterministic in-process network of Raft objects for the unit tests
// and the benchmark: one group, nodes 1..n, one shared clock advanced by
// hand, FIFO delivery, optional drop filter, and per-node control of when
// persistence completes (so tests can prove what waits for what).
//
// Persistence: every take_ready() is one "batch". With auto_persist (the
// default) a batch is persisted into the node's MemoryStorage and
// acknowledged at once, then all its messages leave. Without it, kNow
// messages leave at once and the rest wait until the test calls
// persist_hard_state(id) (hard states only: kHardState messages may leave)
// or persist_all(id) (everything, in order).
#pragma once

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include "raft/memory_storage.h"
#include "raft/raft.h"
#include "runtime/base/assert.h"
#include "runtime/base/bytes.h"

namespace nori::raft::testing {

using namespace std::chrono_literals;

class TestCluster {
 public:
  struct Batch {
    std::optional<HardState> hard_state;
    std::optional<Index> truncate_from;
    std::vector<Entry> entries;
    std::vector<OutMessage> held;  // after != kNow
    bool hard_state_done = false;
  };
  struct Node {
    NodeId id = kNoNode;
    Config config;
    std::unique_ptr<MemoryStorage> disk;
    std::unique_ptr<Raft> raft;
    bool up = true;
    bool auto_persist = true;
    bool auto_apply = true;
    std::deque<Batch> batches;   // not yet fully persisted (manual mode)
    std::vector<Entry> applied;  // everything this incarnation applied
    Index pending_apply = 0;     // handed out but not yet applied (manual apply)
    std::vector<ReadResult> reads;
    std::vector<ProposalResult> proposals;
    std::vector<Event> events;
    std::vector<Message> sent;  // every message that left, for assertions
    Ready ready;
    int64_t drift_ppm = 0;
    // Snapshot "files" (survive crashes): index -> (meta, bytes). The state
    // machine is `applied`; a snapshot encodes its entries.
    std::map<Index, std::pair<SnapshotMeta, std::string>> snapshots;
    std::string receiving;  // partial file of the transfer being received
    size_t installs = 0;
    size_t snapshots_taken = 0;
  };

  // Snapshot chunk size for every node's sender.
  void set_snapshot_chunk_bytes(size_t n) { chunk_bytes_ = n; }

  static std::string encode_state(const std::vector<Entry>& applied, Index upto) {
    std::string out;
    base::ByteWriter w(out);
    for (const Entry& e : applied) {
      if (e.index > upto) break;
      w.varint(e.index);
      w.varint(e.term);
      w.u8(static_cast<uint8_t>(e.type));
      w.length_prefixed(e.data);
    }
    return out;
  }
  static std::vector<Entry> decode_state(std::string_view data) {
    std::vector<Entry> out;
    base::ByteReader r(data);
    while (!r.empty()) {
      Entry e;
      uint8_t type;
      std::string_view d;
      NORI_ASSERT(r.varint(e.index) && r.varint(e.term) && r.u8(type) &&
                  r.length_prefixed(d, 1ull << 30));
      e.type = static_cast<EntryType>(type);
      e.data.assign(d);
      out.push_back(std::move(e));
    }
    return out;
  }

  explicit TestCluster(size_t n, std::function<void(Config&)> tweak = {},
                       TimePoint start = base::time_from_ns(1'000'000'000'000))
      : now_(start), start_(start), tweak_(std::move(tweak)) {
    for (NodeId id = 1; id <= n; ++id)
      voters_.push_back(id);
    for (NodeId id = 1; id <= n; ++id) {
      auto node = std::make_unique<Node>();
      node->id = id;
      node->disk = std::make_unique<MemoryStorage>();
      nodes_[id] = std::move(node);
      start_node(id);
    }
  }

  TimePoint now() const { return now_; }

  // Per-node clock rate: node `id`'s clock runs at (1 + ppm / 1e6) times real
  // (cluster) time from the cluster's start. Every call into that node's
  // Raft object gets its local time.
  void set_drift_ppm(NodeId id, int64_t ppm) { node(id).drift_ppm = ppm; }
  TimePoint local(NodeId id) { return to_local(node(id), now_); }
  // Inverse: the real time at which node `id`'s clock shows `t`.
  TimePoint real_time_of(NodeId id, TimePoint t) {
    __int128 local_ns = base::to_ns(t - start_);
    __int128 real_ns = local_ns * 1'000'000 / (1'000'000 + node(id).drift_ppm);
    return start_ + Duration(static_cast<int64_t>(real_ns));
  }
  Node& node(NodeId id) { return *nodes_.at(id); }
  // The appends that carried entries, sent by `from` to `to`, in send order.
  std::vector<const Append*> appends_with_entries(NodeId from, NodeId to) {
    std::vector<const Append*> out;
    for (const Message& m : node(from).sent) {
      auto* a = std::get_if<Append>(&m.body);
      if (a != nullptr && m.to == to && !a->entries.empty()) out.push_back(a);
    }
    return out;
  }
  Raft& raft(NodeId id) { return *nodes_.at(id)->raft; }
  const std::vector<NodeId>& ids() const { return voters_; }

  // Drops a message when it returns true.
  void set_drop(std::function<bool(const Message&)> drop) { drop_ = std::move(drop); }
  void isolate(NodeId id) { isolated_.insert(id); }
  void heal() { isolated_.clear(); }

  // Adds node `id` with an empty disk and no bootstrap configuration, as a
  // node joining an existing group starts (it learns its configuration from
  // the leader's log). It receives messages once some member sends it any.
  void add_node(NodeId id) {
    NORI_ASSERT(!nodes_.count(id), "node {} exists", id);
    auto node = std::make_unique<Node>();
    node->id = id;
    node->disk = std::make_unique<MemoryStorage>();
    nodes_[id] = std::move(node);
    joined_.insert(id);
    start_node(id);
  }
  bool has_node(NodeId id) const { return nodes_.count(id) > 0; }
  std::vector<NodeId> all_ids() const {
    std::vector<NodeId> out;
    for (auto& [id, n] : nodes_)
      out.push_back(id);
    return out;
  }

  // (Re)creates the Raft object of `id` from its durable storage, losing
  // whatever was not persisted.
  void start_node(NodeId id) {
    Node& n = node(id);
    n.config = Config{};
    n.config.id = id;
    n.config.group = 1;
    if (!joined_.count(id)) n.config.voters = voters_;
    n.config.random_seed = 42 + id;
    if (tweak_) tweak_(n.config);
    n.batches.clear();
    n.applied.clear();
    n.pending_apply = 0;
    n.receiving.clear();
    // Recovery: restore the state machine from the latest snapshot first.
    SnapshotMeta snap = n.disk->snapshot_meta();
    if (snap.index > 0) {
      n.applied = decode_state(n.snapshots.at(snap.index).second);
      n.config.applied = snap.index;
      n.pending_apply = snap.index;
    }
    n.raft = std::make_unique<Raft>(n.config, *n.disk, to_local(n, now_));
    n.up = true;
  }
  void crash(NodeId id) {
    node(id).up = false;
    node(id).raft.reset();
  }

  // Chaos delivery (for randomized tests): each pending message is, per
  // settle pass, delivered, delivered and duplicated, held back (delayed to
  // a later pass or tick), or dropped; delivery order is shuffled.
  void set_chaos(uint64_t seed) {
    chaos_ = true;
    chaos_rng_.seed(seed);
  }

  // Drains every node's Ready and delivers messages until the network is quiet.
  void settle(int rounds_max = 10000) {
    if (chaos_) return settle_chaos();
    for (int i = 0; i < rounds_max; ++i) {
      bool any = false;
      for (auto& [id, n] : nodes_) {
        if (n->up && n->raft->has_ready()) {
          process(*n);
          any = true;
        }
      }
      while (!wire_.empty()) {
        Message m = std::move(wire_.front());
        wire_.pop_front();
        auto it = nodes_.find(m.to);
        if (it == nodes_.end() || !it->second->up) continue;
        Node& to = *it->second;
        to.raft->step(std::move(m), to_local(to, now_));
        any = true;
      }
      if (!any) return;
    }
    NORI_PANIC("test network did not settle in {} rounds", rounds_max);
  }

  // Advances the clock in steps, ticking every node and settling.
  void advance(Duration d, Duration step = 10ms) {
    TimePoint end = now_ + d;
    while (now_ < end) {
      now_ = std::min(end, now_ + step);
      for (auto& [id, n] : nodes_) {
        if (n->up) n->raft->tick(to_local(*n, now_));
      }
      settle();
    }
  }
  void set_now(TimePoint t) { now_ = t; }

  // Runs until some node leads; returns it (0 on failure).
  NodeId wait_for_leader(Duration limit = 5s) {
    TimePoint end = now_ + limit;
    while (now_ < end) {
      if (NodeId l = leader(); l != kNoNode) return l;
      advance(10ms);
    }
    return leader();
  }
  NodeId leader() {
    NodeId found = kNoNode;
    Term best = 0;
    for (auto& [id, n] : nodes_) {
      if (n->up && n->raft->is_leader() && n->raft->term() >= best) {
        best = n->raft->term();
        found = id;
      }
    }
    return found;
  }
  // Elects `id` by starting its campaign now.
  void elect(NodeId id) {
    raft(id).campaign(local(id));
    settle();
  }

  // Manual persistence.
  void persist_hard_state(NodeId id) {
    Node& n = node(id);
    for (Batch& b : n.batches) {
      if (b.hard_state && !b.hard_state_done) {
        n.disk->set_hard_state(*b.hard_state);
        n.raft->hard_state_persisted(*b.hard_state, to_local(n, now_));
        b.hard_state_done = true;
      }
      // kHardState messages of a batch may leave once its hard state is durable.
      std::vector<OutMessage> keep;
      for (OutMessage& m : b.held) {
        if (m.after == SendAfter::kHardState && (b.hard_state_done || !b.hard_state)) {
          send(n, std::move(m.msg));
        } else {
          keep.push_back(std::move(m));
        }
      }
      b.held = std::move(keep);
    }
  }
  void persist_all(NodeId id) {
    Node& n = node(id);
    while (!n.batches.empty()) {
      Batch b = std::move(n.batches.front());
      n.batches.pop_front();
      persist_batch(n, b);
    }
  }
  size_t held_messages(NodeId id) {
    size_t k = 0;
    for (const Batch& b : node(id).batches)
      k += b.held.size();
    return k;
  }

  // Manual apply: apply everything handed out.
  void apply_all(NodeId id) {
    Node& n = node(id);
    if (n.pending_apply > 0) n.raft->applied(n.pending_apply, to_local(n, now_));
  }

  // Messages of `type` in flight (sent, not yet delivered).
  size_t in_flight(MessageType type) const {
    size_t k = 0;
    for (const Message& m : wire_)
      k += m.type() == type;
    return k;
  }
  std::deque<Message>& wire() { return wire_; }

 private:
  void drain_all() {
    for (auto& [id, n] : nodes_) {
      if (n->up && n->raft->has_ready()) process(*n);
    }
  }
  void settle_chaos() {
    for (int pass = 0; pass < 4; ++pass) {
      drain_all();
      std::deque<Message> batch;
      batch.swap(wire_);
      std::shuffle(batch.begin(), batch.end(), chaos_rng_);
      for (Message& m : batch) {
        uint64_t dice = chaos_rng_() % 100;
        if (dice < 5) continue;  // lost
        if (dice < 20) {         // delayed
          wire_.push_back(std::move(m));
          continue;
        }
        if (dice < 25) wire_.push_back(m);  // duplicated
        auto it = nodes_.find(m.to);
        if (it != nodes_.end() && it->second->up) {
          it->second->raft->step(std::move(m), to_local(*it->second, now_));
        }
      }
    }
    drain_all();
  }

  void send(Node& from, Message m) {
    from.sent.push_back(m);
    if (isolated_.count(m.from) || isolated_.count(m.to)) return;
    if (drop_ && drop_(m)) return;
    wire_.push_back(std::move(m));
  }

  void persist_batch(Node& n, Batch& b) {
    if (b.hard_state && !b.hard_state_done) n.disk->set_hard_state(*b.hard_state);
    if (b.truncate_from) n.disk->truncate_from(*b.truncate_from);
    n.disk->append(b.entries);
    if (b.hard_state && !b.hard_state_done) {
      n.raft->hard_state_persisted(*b.hard_state, to_local(n, now_));
    }
    if (!b.entries.empty()) {
      n.raft->entries_persisted(b.entries.back().index, b.entries.back().term, to_local(n, now_));
    }
    for (OutMessage& m : b.held)
      send(n, std::move(m.msg));
  }

  void process(Node& n) {
    n.raft->take_ready(n.ready);
    Ready& r = n.ready;
    Batch b;
    b.hard_state = r.hard_state;
    b.truncate_from = r.truncate_from;
    b.entries = r.entries;
    for (OutMessage& m : r.messages) {
      if (m.after == SendAfter::kNow) {
        send(n, std::move(m.msg));
      } else {
        b.held.push_back(std::move(m));
      }
    }
    if (n.auto_persist && n.batches.empty()) {
      persist_batch(n, b);
    } else if (b.hard_state || b.truncate_from || !b.entries.empty() || !b.held.empty()) {
      n.batches.push_back(std::move(b));
    }
    TimePoint local_now = to_local(n, now_);
    SnapshotWork none;
    SnapshotWork& sw = r.snapshot ? *r.snapshot : none;
    if (sw.request) {
      // The state machine is exactly at the requested index (this Ready's
      // committed entries are not applied yet).
      const SnapshotMeta& meta = *sw.request;
      NORI_ASSERT(!n.applied.empty() && n.applied.back().index == meta.index,
                  "snapshot request at {} but the state machine is at {}", meta.index,
                  n.applied.empty() ? 0 : n.applied.back().index);
      n.snapshots[meta.index] = {meta, encode_state(n.applied, meta.index)};
      n.disk->set_snapshot(meta);
      ++n.snapshots_taken;
      n.raft->snapshot_taken(meta, local_now);
    }
    if (sw.compact_before) n.disk->compact(*sw.compact_before);
    for (const SnapshotSend& ss : sw.sends) {
      if (ss.finished) continue;
      const std::string& file = n.snapshots.at(ss.meta.index).second;
      NORI_ASSERT(ss.offset <= file.size());
      SnapshotChunk c{.index = ss.meta.index,
                      .index_term = ss.meta.term,
                      .offset = ss.offset,
                      .total_bytes = file.size(),
                      .digest = base::xxh3_64(file),
                      .last = ss.offset + chunk_bytes_ >= file.size(),
                      .membership = ss.meta.membership.encode(),
                      .data = file.substr(ss.offset, chunk_bytes_)};
      send(n, Message{1, n.id, ss.to, ss.term, std::move(c)});
    }
    for (Entry& e : r.committed) {
      n.pending_apply = e.index;
      n.applied.push_back(std::move(e));
    }
    for (auto& x : r.reads)
      n.reads.push_back(std::move(x));
    for (auto& x : r.proposals)
      n.proposals.push_back(std::move(x));
    for (auto& x : r.events)
      n.events.push_back(x);
    if (n.auto_apply && !r.committed.empty()) n.raft->applied(n.pending_apply, to_local(n, now_));
    for (SnapshotChunkIn& in : sw.chunks) {
      SnapshotChunk& c = in.chunk;
      if (c.offset == 0) n.receiving.clear();
      NORI_ASSERT(n.receiving.size() == c.offset, "chunk at {} after {} bytes", c.offset,
                  n.receiving.size());
      n.receiving += c.data;
      auto mem = Membership::decode(c.membership);
      NORI_ASSERT(mem.ok());
      SnapshotMeta meta{c.index, c.index_term, *mem};
      n.raft->snapshot_chunk_written(meta, in.term, n.receiving.size(), local_now);
      if (!c.last) continue;
      if (base::xxh3_64(n.receiving) != c.digest) {
        n.receiving.clear();
        n.raft->snapshot_receive_failed(local_now);
        continue;
      }
      // Install order: file durable, reset record durable, state machine
      // restored, then acknowledge.
      if (install_fault_ == 1) {
        install_fault_ = 0;
        return;  // crash right after the file: the caller crashes the node
      }
      n.snapshots[meta.index] = {meta, n.receiving};
      n.receiving.clear();
      if (install_fault_ == 2) {
        install_fault_ = 0;
        return;  // file durable, reset record not written
      }
      n.disk->install_snapshot(meta);
      if (install_fault_ == 3) {
        install_fault_ = 0;
        return;  // reset record durable, state machine not restored
      }
      n.applied = decode_state(n.snapshots.at(meta.index).second);
      n.pending_apply = meta.index;
      ++n.installs;
      n.raft->snapshot_installed(meta, local_now);
    }
  }

 public:
  // The next snapshot install on any node stops after step `step` (1: file
  // received but not renamed, 2: file durable, 3: reset record durable); the
  // test then crashes that node, as a power cut at that point would.
  void set_install_fault(int step) { install_fault_ = step; }
  bool install_fault_pending() const { return install_fault_ != 0; }

 private:
  TimePoint to_local(const Node& n, TimePoint real) const {
    if (n.drift_ppm == 0) return real;
    __int128 ns = base::to_ns(real - start_);
    return start_ + Duration(static_cast<int64_t>(ns * (1'000'000 + n.drift_ppm) / 1'000'000));
  }

  TimePoint now_;
  TimePoint start_;
  std::function<void(Config&)> tweak_;
  std::vector<NodeId> voters_;
  std::map<NodeId, std::unique_ptr<Node>> nodes_;
  std::deque<Message> wire_;
  std::function<bool(const Message&)> drop_;
  std::set<NodeId> isolated_;
  std::set<NodeId> joined_;  // added by add_node: no bootstrap configuration
  bool chaos_ = false;
  size_t chunk_bytes_ = 1 << 20;
  int install_fault_ = 0;
  std::mt19937_64 chaos_rng_;
};

}  // namespace nori::raft::testing
