// CoreHost: groups created and removed at run time, and the per-core part of
// the node-wide membership operations (Node::add_node / remove_node), with
// the node-control messages that forward a group's change to its leader.
// The contracts are in node.h ("Group lifecycle", "Node-wide membership")
// and docs/node.md.
#include <algorithm>
#include <chrono>
#include <filesystem>

#include "raft/node/core_host.h"
#include "raft/node/node_control.h"
#include "runtime/runtime.h"
#include "wal/posix_dir.h"

namespace nori::raft {

using base::BootClock;
using base::ErrorKind;
using runtime::Task;

namespace {

// Node-control requests this core forwarded and still waits for; a change
// beyond it is retried (kBusy) like any busy leader.
constexpr size_t kForwardsInFlightMax = 1024;
// Requests from other nodes this core is serving at once; beyond it the
// request is answered kBusy at once (the sender retries).
constexpr uint32_t kServedInFlightMax = 256;
// Groups of one core changed concurrently by add_node / remove_node.
constexpr size_t kNodeChangeParallelMax = 64;
// How long a forwarded kAppended change waits for its reply before it is
// sent again (the reply, or the request, may have been lost).
constexpr int64_t kForwardReplyWaitMs = 2000;
// Pause before retrying a change refused with kBusy / kNotLeader (no leader
// known) or unanswered: about one heartbeat, so a new leader can emerge.
constexpr int64_t kRetryPauseMs = 50;
// Retries that follow a leader hint at once, before pausing again.
constexpr int kQuickRetriesMax = 3;

bool retryable(ErrorKind k) {
  return k == ErrorKind::kNotLeader || k == ErrorKind::kBusy || k == ErrorKind::kTimedOut ||
         k == ErrorKind::kNoQuorum || k == ErrorKind::kUnavailable || k == ErrorKind::kClosed ||
         k == ErrorKind::kIo;
}

}  // namespace

// ---- creating and removing groups ---------------------------------------------

Task<base::Status> CoreHost::create_group(GroupId id) {
  if (id == kNodeControlGroup) {
    co_return base::err(ErrorKind::kInvalidArgument, "group id {} is reserved", id);
  }
  if (closing_) co_return base::Error(ErrorKind::kShuttingDown, "the node is shutting down");
  if (retiring_.contains(id)) {
    co_return base::err(ErrorKind::kBusy,
                        "group {} is still being removed (its snapshot files are being "
                        "deleted): retry",
                        id);
  }
  if (find(id) != nullptr) co_return base::err(ErrorKind::kInvalidArgument, "group {} exists", id);
  // Off the removed list first: a crash after the group's first records
  // then finds it in the WAL, and a crash before finds it still removed.
  if (removed_ && removed_->contains(id)) NORI_CO_TRY(co_await persist_removed(id, false));
  co_return co_await add_group(id);
}

Task<base::Status> CoreHost::persist_removed(GroupId id, bool removed) {
  if (!removed_) co_return base::Status{};
  const bool before = removed_->contains(id);
  removed_->set(id, removed);
  // The whole list as of now: jobs run in order, so the file ends as the
  // newest list even when changes overlap.
  std::string text = removed_->text();
  std::string dir = removed_->dir(), name = removed_->name();
  OneShot<base::Status> done;
  bool queued = false;
  while (!closing_) {
    queued = worker_->run<base::Status>(
        [dir, name, text]() { return wal::write_file_durably(dir, name, text); },
        [&done](base::Status st) { done.resolve(std::move(st)); });
    if (queued) break;
    if (!(co_await runtime::sleep_for(std::chrono::milliseconds(kRetryPauseMs))).ok()) break;
  }
  base::Status st =
      queued ? co_await done
             : base::Status(base::Error(ErrorKind::kShuttingDown, "the node is shutting down"));
  if (!st.ok()) removed_->set(id, before);
  co_return st;
}

std::vector<GroupId> CoreHost::local_groups() const {
  std::vector<GroupId> out;
  out.reserve(groups_.size());
  for (const auto& [id, g] : groups_) {
    if (g->removal == nullptr) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Unforced removal is for a replica the group no longer counts on: the
// configuration this node's log is heading to leaves it out (remove_member
// / remove_node ran: this node is at most an outgoing voter of a joint
// configuration, which the leader leaves by itself; a removed node often
// never receives the final configuration, since the leader stops sending
// to it once that is appended), or the group has no other member. Anything
// else would leave the other replicas counting on a vote and a log that
// are gone, exactly like a wiped disk (docs/node.md, "Group lifecycle").
base::Status CoreHost::check_removable(Group* g, bool force) const {
  if (force) return {};
  const Membership& m = g->raft->membership();
  const auto in = [&](const std::vector<NodeId>& v) {
    return std::find(v.begin(), v.end(), cfg_.node_id) != v.end();
  };
  if (!in(m.voters) && !in(m.learners)) return {};
  bool others = false;
  for (const auto* list : {&m.voters, &m.voters_outgoing, &m.learners}) {
    for (NodeId id : *list)
      others = others || id != cfg_.node_id;
  }
  if (!others) return {};
  return base::err(ErrorKind::kInvalidArgument,
                   "group {}: node {} is still a member ({}{}); take it out first "
                   "(remove_member on the group's leader, or remove_node), or remove with "
                   "force = true when the group is retired on every node",
                   g->id, cfg_.node_id, to_string(m), g->raft->is_leader() ? ", and leads it" : "");
}

Task<base::Status> CoreHost::remove_group(GroupId id, bool force) {
  if (closing_) co_return base::Error(ErrorKind::kShuttingDown, "the node is shutting down");
  Group* g = find(id);
  if (g == nullptr) co_return base::err(ErrorKind::kNotFound, "no group {} on this node", id);
  if (g->removal != nullptr || retiring_.contains(id)) {
    co_return base::err(ErrorKind::kBusy, "group {} is already being removed", id);
  }
  NORI_CO_TRY(check_removable(g, force));
  // On the removed list first (durable): from the moment the remove record
  // may be durable, a restart must not create the group again from
  // RaftConfig::groups. A crash in between leaves the group in the WAL,
  // recovered as it was (the list only stops config-driven creation).
  retiring_.insert(id);
  if (base::Status st = co_await persist_removed(id, true); !st.ok()) {
    retiring_.erase(id);
    co_return base::err(st.error().kind(), "group {} not removed: {}", id, st.error().to_string());
  }
  g = find(id);
  if (g == nullptr) {  // closed meanwhile
    retiring_.erase(id);
    co_return base::Error(ErrorKind::kShuttingDown, "the node is shutting down");
  }
  // The next round takes the group out (retire_group): only there does no
  // other step of the round hold it across an await.
  RemoveRequest req;
  g->removal = &req;
  mark_dirty(g);
  base::Result<wal::Position> pos = co_await req.appended;
  if (!pos.ok()) {
    // Not taken out (the node closed first): it stays, and so does its
    // entry on the removed list, which only keeps a restart from creating
    // it afresh (the WAL still recovers it).
    retiring_.erase(id);
    co_return std::move(pos).error();
  }
  base::Status st = co_await wal_->wait_durable(*pos);
  if (!st.ok()) {
    co_return base::err(ErrorKind::kOutcomeUnknown,
                        "group {}: the node closed before its removal was durable; a restart may "
                        "find the group again",
                        id);
  }
  // The snapshot files go only now: had they gone first, a crash before the
  // record was durable would recover a group whose log is compacted behind
  // a snapshot that no longer exists. A crash now leaves files of a group
  // that does not exist; a group created later under this id removes them
  // (recovery keeps only files its WAL confirms).
  //
  // On the snapshot worker, behind every job queued for this group before
  // (jobs run in order, their completions reach this core in order): once
  // this one is done, no completion for the old group is left, so the id
  // may be created again.
  const std::string dir = fmt::format("{}/snapshots/{}", cfg_.data_dir, id);
  OneShot<base::Status> cleaned;
  bool queued = false;
  while (!closing_) {
    queued = worker_->run<base::Status>(
        [dir]() -> base::Status {
          std::error_code ec;
          std::filesystem::remove_all(dir, ec);
          if (ec) return base::err(ErrorKind::kIo, "remove {}: {}", dir, ec.message());
          return {};
        },
        [&cleaned](base::Status s) { cleaned.resolve(std::move(s)); });
    if (queued) break;
    // The worker's queue is full (kSnapshotJobsMax): wait for room.
    if (!(co_await runtime::sleep_for(std::chrono::milliseconds(kRetryPauseMs))).ok()) break;
  }
  base::Status files =
      queued ? co_await cleaned
             : base::Status(base::Error(ErrorKind::kShuttingDown, "the node is shutting down"));
  req.store.reset();
  retiring_.erase(id);
  if (!files.ok()) {
    co_return base::err(files.error().kind(),
                        "group {} is removed (durably) but its snapshot files were not deleted: {}",
                        id, files.error().message());
  }
  co_return base::Status{};
}

Task<void> CoreHost::retire_group(Group* g) {
  RemoveRequest* req = g->removal;
  g->removal = nullptr;
  const GroupId id = g->id;
  // 1. Out of reach: no timer fires for it, no peer message, tick, API call
  // or completion finds it from here on.
  g->timer.disarm();
  auto it = groups_.find(id);
  NORI_ASSERT(it != groups_.end() && it->second.get() == g, "retiring unknown group {}", id);
  std::unique_ptr<Group> owned = std::move(it->second);
  groups_.erase(it);
  node_.unregister_group(id);
  groups_gauge_.set(static_cast<int64_t>(groups_.size()));
  if (g->role_gauge != nullptr) {
    // The group is gone: its series leaves /metrics (a re-created group
    // registers it again).
    registry_.retire("raft_role", {{"group", std::to_string(id)}});
    g->role_gauge = nullptr;
  }
  // (A quiesced group leaves the quiesced count in ~Group.)
  // 2. Its callers learn at once. Accepted proposals get kOutcomeUnknown
  // (the other replicas may still commit them), reads kShuttingDown.
  fail_all_waiters(g, ErrorKind::kShuttingDown, "the group is being removed from this node");
  // 3. Its snapshot work stops: transfers end, a partial receive is
  // dropped; the store stays alive (req) until the worker jobs that may
  // still use it have run.
  if (g->snap) {
    while (!g->snap->sending.empty())
      end_transfer(g, g->snap->sending.begin()->first);
    g->snap->receiver.reset();
    req->store = std::move(g->snap->store);
  }
  retiring_.insert(id);
  // 4. Durability acks queued for it must not reach a group created later
  // under the same id (removing entries keeps the queue ordered).
  std::erase_if(deferred_, [id](const Deferred& d) { return d.group == id; });
  // 5. The remove record, in this round's group commit. The group's Ready
  // (anything not yet appended) is dropped with it.
  // Backpressure as in wal_append (core_host.cc): the round waits.
  std::optional<wal::Position> pos;
  while (!pos) {
    base::Result<wal::Position> r = wal_->remove_group(id);
    if (r.ok()) {
      pos = *r;
      break;
    }
    base::Status waited;
    if (r.error().kind() == ErrorKind::kBusy) {
      waited = co_await wal_->wait_writable();
    } else if (r.error().kind() == ErrorKind::kNoSpace) {
      waited = co_await runtime::sleep_for(std::chrono::milliseconds(10));
    } else {
      NORI_PANIC("core {}: WAL remove_group({}) failed: {}", core_, id, r.error().to_string());
    }
    if (!waited.ok()) break;  // closing
  }
  std::erase(dirty_, g);
  owned.reset();  // the Raft object, its storage view and its caches
  // The peers this core admits came from its groups' configurations: a
  // node only this group named is forgotten at the end of the round.
  peers_dirty_ = true;
  if (pos) {
    req->appended.resolve(*pos);
  } else {
    req->appended.resolve(base::Error(ErrorKind::kShuttingDown, "the node is shutting down"));
  }
}

// ---- node-wide membership ---------------------------------------------------------

Task<base::Status> CoreHost::change_member_anywhere(GroupId id, bool adding, NodeId node,
                                                    std::string addr, Node::MemberWait wait,
                                                    TimePoint deadline) {
  bool uncertain = false;  // an earlier attempt may have taken effect
  NodeId hint = kNoNode;   // the leader named by the last kNotLeader
  int quick_retries = 0;   // retries without a pause since the last pause
  base::Status last = base::Error(ErrorKind::kTimedOut, "no attempt made");
  while (true) {
    if (closing_) co_return base::Error(ErrorKind::kShuttingDown, "the node is shutting down");
    Group* g = find(id);
    if (g == nullptr) co_return base::err(ErrorKind::kNotFound, "no group {} on this node", id);
    // Done already (an earlier attempt whose reply was lost, or nothing to
    // do), as far as this replica's log tells: the configuration committed
    // here has `node` a voter (add) / not a member (remove).
    {
      const Raft& r = *g->raft;
      const Membership& m = r.membership();
      const bool settled =
          r.membership_index() <= r.commit_index() && !m.joint() && m.promote.empty();
      if (settled && (adding ? m.is_voter(node) : !m.contains(node))) co_return base::Status{};
    }
    const TimePoint now = BootClock::now();
    if (now >= deadline) {
      co_return base::Error(uncertain ? ErrorKind::kOutcomeUnknown : ErrorKind::kTimedOut,
                            fmt::format("group {}: not done in time; last: {}", id,
                                        last.ok() ? "ok" : last.error().to_string()));
    }
    // Where to run it: here if this replica leads, else the leader named by
    // the last refusal, else the leader this replica knows.
    NodeId target = g->raft->is_leader() ? cfg_.node_id : hint;
    if (target == kNoNode) target = g->raft->leader();
    hint = kNoNode;
    base::Status st;
    if (target == cfg_.node_id) {
      st = co_await change_member(id, adding, node, addr, wait);
    } else if (target == kNoNode) {
      st = base::err(ErrorKind::kNotLeader, "group {}: no leader known", id);
    } else if (forwards_.size() >= kForwardsInFlightMax) {
      st = base::err(ErrorKind::kBusy, "{} forwarded changes in flight", forwards_.size());
    } else {
      const NodeId leader = target;
      const uint64_t rid = next_forward_id_++;
      MemberRequestMsg msg{rid, id, adding, static_cast<uint8_t>(wait), node, addr};
      OneShot<base::Status> reply;
      forwards_.emplace(rid, &reply);
      st = transport_->send(leader, kNodeControlGroup, net::MessageType::kGroup,
                            encode_member_request(msg));
      if (!st.ok()) {
        forwards_.erase(rid);
      } else {
        TimePoint give_up = deadline;
        if (wait == Node::MemberWait::kAppended) {
          give_up = std::min(deadline, now + std::chrono::milliseconds(kForwardReplyWaitMs));
        }
        runtime::Timer timer([this, rid, &reply, leader] {
          auto f = forwards_.find(rid);
          if (f == forwards_.end()) return;
          forwards_.erase(f);
          reply.resolve(
              base::err(ErrorKind::kTimedOut, "no reply from the leader (node {})", leader));
        });
        timer.arm_at(give_up);
        st = co_await reply;
        timer.cancel();
        // Unanswered: the leader may have run it.
        if (!st.ok() && st.error().kind() == ErrorKind::kTimedOut) uncertain = true;
      }
    }
    if (st.ok()) co_return st;
    const ErrorKind k = st.error().kind();
    if (k == ErrorKind::kInvalidArgument && uncertain) {
      // "Already a member" / "not a member" after an attempt that may have
      // run: most likely our own change; this replica has not seen it yet.
      co_return base::err(ErrorKind::kOutcomeUnknown, "group {}: {} (after an unanswered attempt)",
                          id, st.error().message());
    }
    if (!retryable(k)) co_return st;
    if (k == ErrorKind::kNotLeader && st.error().hint() != kNoNode && st.error().hint() != target &&
        quick_retries < kQuickRetriesMax) {
      // A new leader named: tried at once (this replica's leader() may lag
      // it); bounded, so two nodes naming each other cannot spin.
      ++quick_retries;
      hint = st.error().hint();
      last = std::move(st);
      continue;
    }
    quick_retries = 0;
    last = std::move(st);
    if (!(co_await runtime::sleep_for(std::chrono::milliseconds(kRetryPauseMs))).ok()) {
      co_return base::Error(ErrorKind::kShuttingDown, "the node is shutting down");
    }
  }
}

void CoreHost::fail_forwards() {
  auto forwards = std::move(forwards_);
  forwards_.clear();
  for (auto& [rid, w] : forwards)
    w->resolve(base::Error(ErrorKind::kShuttingDown, "the node is shutting down"));
}

void CoreHost::on_node_control(NodeId from, std::string_view payload) {
  if (closing_) return;
  auto kind = node_control_kind(payload);
  if (!kind.ok()) return;  // malformed: dropped (the sender's deadline covers it)
  if (*kind == NodeControlKind::kAddressBook) {
    on_address_book(from, payload);
    return;
  }
  if (*kind == NodeControlKind::kMemberReply) {
    auto rep = decode_member_reply(payload);
    if (!rep.ok()) return;
    auto it = forwards_.find(rep->request_id);
    if (it == forwards_.end()) return;  // timed out already
    OneShot<base::Status>* w = it->second;
    forwards_.erase(it);
    w->resolve(std::move(rep->status));
    return;
  }
  auto req = decode_member_request(payload);
  if (!req.ok()) return;
  if (served_in_flight_ >= kServedInFlightMax) {
    MemberReplyMsg busy{req->request_id,
                        base::err(ErrorKind::kBusy, "node {} serves {} forwarded changes already",
                                  cfg_.node_id, served_in_flight_)};
    (void)transport_->send(from, kNodeControlGroup, net::MessageType::kGroup,
                           encode_member_reply(busy));
    return;
  }
  spawn_gated(serve_member_request(from, req->request_id, req->group, req->adding, req->node,
                                   std::move(req->address),
                                   static_cast<Node::MemberWait>(req->wait)));
}

Task<void> CoreHost::serve_member_request(NodeId from, uint64_t request_id, GroupId id, bool adding,
                                          NodeId node, std::string addr, Node::MemberWait wait) {
  ++served_in_flight_;
  // Run exactly as a local call would (not leader: kNotLeader with the hint,
  // which the sender follows).
  base::Status st = co_await change_member(id, adding, node, std::move(addr), wait);
  --served_in_flight_;
  if (closing_) co_return;
  // A lost reply is covered by the sender's deadline.
  (void)transport_->send(from, kNodeControlGroup, net::MessageType::kGroup,
                         encode_member_reply(MemberReplyMsg{request_id, std::move(st)}));
}

namespace {

struct ChangeBatch {
  size_t left = 0;
  OneShot<bool> done;
};

Task<void> change_one(CoreHost* h, GroupId g, bool adding, NodeId node, std::string addr,
                      Node::MemberWait wait, TimePoint deadline, base::Status* out,
                      ChangeBatch* batch) {
  *out = co_await h->change_member_anywhere(g, adding, node, std::move(addr), wait, deadline);
  if (--batch->left == 0) batch->done.resolve(true);
}

}  // namespace

Task<std::vector<std::pair<GroupId, base::Status>>> CoreHost::change_member_all(
    bool adding, NodeId node, std::string addr, Node::MemberWait wait, TimePoint deadline) {
  const std::vector<GroupId> ids = local_groups();
  std::vector<base::Status> results(ids.size());
  for (size_t start = 0; start < ids.size(); start += kNodeChangeParallelMax) {
    const size_t end = std::min(ids.size(), start + kNodeChangeParallelMax);
    ChangeBatch batch;
    batch.left = end - start;
    for (size_t i = start; i < end; ++i) {
      runtime::spawn(
          change_one(this, ids[i], adding, node, addr, wait, deadline, &results[i], &batch));
    }
    co_await batch.done;
  }
  std::vector<std::pair<GroupId, base::Status>> out;
  out.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i)
    out.emplace_back(ids[i], std::move(results[i]));
  co_return out;
}

}  // namespace nori::raft
