#include "kv/server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "kv/commands.h"
#include "kv/peer_book.h"
#include "kv/snapshot.h"
#include "net/socket.h"
#include "runtime/base/bytes.h"
#include "runtime/combinators.h"
#include "runtime/io.h"
#include "runtime/oneshot.h"

namespace nori::kv {

namespace io = runtime::io;
using base::ErrorKind;
using raft::GroupId;
using runtime::Task;

namespace {

uint64_t wall_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

std::string upper(std::string_view s) {
  std::string u(s);
  for (char& c : u) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return u;
}

std::string err(std::string_view text) {
  std::string out;
  reply::error(out, text);
  return out;
}

std::string encode_command(const std::vector<std::string>& argv) {
  std::string out;
  reply::array_header(out, argv.size());
  for (const auto& a : argv)
    reply::bulk(out, a);
  return out;
}

// The RESP error for a failure of the node, by whether it may have applied.
std::string error_reply(const base::Error& e, uint32_t shard) {
  switch (e.kind()) {
    case ErrorKind::kOutcomeUnknown:
      return err(fmt::format("UNKNOWN shard {}: {}; the command may or may not have taken effect",
                             shard, e.message()));
    case ErrorKind::kNoQuorum:
      return err(fmt::format("CLUSTERDOWN shard {} has no quorum: {}", shard, e.message()));
    case ErrorKind::kInvalidArgument:
      return err(fmt::format("ERR {}", e.message()));
    default:
      return err(fmt::format("TRYAGAIN shard {}: {} (not applied)", shard, e.message()));
  }
}

constexpr std::string_view kMovedPrefix = "-NORIMOVED ";

uint64_t random_nonce() {
  uint64_t v = 0;
  if (::getrandom(&v, sizeof v, 0) != sizeof v) NORI_PANIC("getrandom failed: {}", errno);
  return v;
}

}  // namespace

struct Server::CoreState {
  // A proposal from this node waiting for its own apply. The replies (one
  // per write of the entry: one, or one per write of a batch) are filled by
  // the apply hook; `applied` is set only while the proposer waits for an
  // entry that committed before this node applied it (below).
  struct ApplyWaiter {
    bool filled = false;
    std::vector<std::string> replies;
    runtime::OneShot<bool>* applied = nullptr;
  };
  struct Shard {
    Store store;
    // Proposals waiting for their own apply, by (client, seq). A multimap: a
    // forwarder whose link broke retries with the same seq while the first
    // copy may still wait here.
    // A batch's proposer waits under its first write's (client, seq).
    std::multimap<std::pair<uint64_t, uint64_t>, ApplyWaiter*> waiters;
    std::vector<std::string> replies;  // the apply hook's scratch
    explicit Shard(StoreOptions o) : store(o) {}
  };
  std::unordered_map<GroupId, std::unique_ptr<Shard>> shards;
  std::map<raft::NodeId, std::unique_ptr<ForwardLink>> links;
  // Core 0 only: client ports learned from CLUSTER ADDNODE / NORI.PEER /
  // NORI.WHOIS, kept in <data-dir>/kv-peers (kv/peer_book.h); every save
  // happens on core 0.
  std::map<raft::NodeId, PeerClientAddress> learned;
  // Core 0 only: asking the other nodes for a client port this node lacks
  // (ServerImpl::lookup_peer). At most kPeerLookupsMax ids; one round per id
  // in flight, the next no sooner than kPeerLookupIntervalMs after it ended.
  struct PeerLookup {
    bool in_flight = false;
    bool learned = false;  // a round's first valid answer was taken: ignore the rest
    base::TimePoint next_at{};
  };
  std::map<raft::NodeId, PeerLookup> lookups;
  // Every core: when this core last asked core 0 to look an id up (so a
  // retrying write does not post a request every 10 ms). At most
  // kPeerLookupsMax ids, cleared when full.
  std::map<raft::NodeId, base::TimePoint> lookup_posted;
  uint64_t next_conn = 0;
  // Random per process start: the node id and incarnation survive a restart
  // (they name the data directory) and next_conn starts again at 0, so without
  // it a restarted node would hand out session ids its shards already hold
  // and new writes would be answered as duplicates of old ones.
  uint64_t boot_nonce = random_nonce();
  int listen_fd = -1;
  int admin_fd = -1;
  // Published counters (written by this core only, read by /metrics).
  std::atomic<uint64_t> batches{0}, batched_writes{0};  // batch entries answered, their writes
  std::atomic<uint64_t> commands{0}, forwarded{0}, retries{0}, err_tryagain{0}, err_clusterdown{0},
      err_unknown{0}, conns_rejected{0}, protocol_errors{0}, peer_lookups{0}, peer_ports_learned{0},
      peer_announce_missed{0};
};

// Everything that runs on reactors; a friend of Server.
struct ServerImpl {
  Server& s;
  const ServerConfig& cfg() const { return s.cfg_; }
  raft::Node& node() { return *s.node_; }
  Server::CoreState& here() { return *s.cores_[runtime::Reactor::here().core()]; }
  Server::CoreState::Shard& shard(GroupId g) {
    auto& st = here();
    auto it = st.shards.find(g);
    NORI_ASSERT(it != st.shards.end(), "shard of group {} not on core {}", g,
                runtime::Reactor::here().core());
    return *it->second;
  }

  struct Conn {
    uint64_t id = 0;
    uint64_t next_seq = 0;
    std::set<uint64_t> outstanding;
    std::unordered_set<uint32_t> shards_answered;  // shards that replied: session open
    bool readonly = false;
    bool quit = false;
  };

  // ---- writes -------------------------------------------------------------

  // On the group's core: propose and collect this entry's replies, one per
  // write (`seqs`: the entry's writes, one or a batch's, in order).
  Task<base::Result<std::vector<std::string>>> propose_here(GroupId g, std::string entry,
                                                            uint64_t client,
                                                            std::vector<uint64_t> seqs) {
    NORI_ASSERT(!seqs.empty(), "an entry without writes");
    auto& sh = shard(g);
    Server::CoreState::ApplyWaiter w;
    const auto key = std::make_pair(client, seqs[0]);
    const auto pos = sh.waiters.emplace(key, &w);
    auto r = co_await node().propose(g, std::move(entry));
    if (r.ok() && !w.filled) {
      // Committed is not applied here: a leader commits an entry once a
      // majority holds it durably, which may be the two followers before the
      // leader's own write completes, and it applies only what its own disk
      // holds. The apply follows that write; wait for it instead of calling
      // the outcome unknown (which cost a retry and a 10 ms back-off: it was
      // the 1-client p99). Bounded: a snapshot install that replaces the
      // Store wakes us too (the session then holds the reply), and the
      // timer ends a wait that outlives the write timeout.
      runtime::OneShot<bool> applied;
      w.applied = &applied;
      runtime::Timer timer([&applied] {
        if (!applied.resolved()) applied.resolve(false);
      });
      timer.arm_in(std::chrono::milliseconds(cfg().write_timeout_ms));
      (void)co_await applied;
      timer.cancel();
      w.applied = nullptr;
    }
    sh.waiters.erase(pos);
    if (!r.ok()) co_return std::move(r).error();
    if (w.filled && w.replies.size() > 1 && seqs.size() == 1) {
      // A retry of a batch's first write on its own, woken by the batch.
      w.replies.resize(1);
    }
    if (!w.filled || w.replies.size() != seqs.size()) {
      // Applied before this node's wait began (a snapshot install), or woken
      // by another entry of the same first write: the session holds the
      // replies of every write that applied.
      w.replies.clear();
      for (uint64_t seq : seqs) {
        auto reply = sh.store.reply_for(client, seq);
        if (!reply) {
          co_return base::Error(ErrorKind::kOutcomeUnknown, "committed but its reply was not kept");
        }
        w.replies.push_back(std::move(*reply));
      }
    }
    co_return std::move(w.replies);
  }

  // One attempt on this node (any core). Errors as the node gives them.
  Task<base::Result<std::vector<std::string>>> write_local(GroupId g, std::string entry,
                                                           uint64_t client,
                                                           std::vector<uint64_t> seqs) {
    co_return co_await runtime::submit_to(
        node().core_of(g),
        [this, g, entry = std::move(entry), client, seqs = std::move(seqs)]() mutable {
          return propose_here(g, std::move(entry), client, std::move(seqs));
        });
  }
  Task<base::Result<std::string>> write_local_one(GroupId g, std::string entry, uint64_t client,
                                                  uint64_t seq) {
    auto r = co_await write_local(g, std::move(entry), client, {seq});
    if (!r.ok()) co_return std::move(r).error();
    co_return std::move(r->front());
  }

  // Interprets a forwarded reply: the leader's own error texts map back to kinds.
  static base::Result<std::string> from_forwarded(std::string r) {
    if (r.starts_with(kMovedPrefix)) {
      const uint64_t hint = std::strtoull(r.c_str() + kMovedPrefix.size(), nullptr, 10);
      return base::Error(ErrorKind::kNotLeader, "moved", hint);
    }
    if (r.starts_with("-TRYAGAIN"))
      return base::Error(ErrorKind::kUnavailable, r.substr(1, r.size() - 3));
    if (r.starts_with("-CLUSTERDOWN"))
      return base::Error(ErrorKind::kNoQuorum, r.substr(1, r.size() - 3));
    if (r.starts_with("-UNKNOWN")) {
      return base::Error(ErrorKind::kOutcomeUnknown, r.substr(1, r.size() - 3));
    }
    return r;
  }

  Task<base::Result<std::string>> forward(raft::NodeId to, std::string request) {
    auto& st = here();
    auto it = st.links.find(to);
    if (it == st.links.end()) {
      // Certainly not sent: the caller retries (TRYAGAIN past its deadline)
      // while core 0 asks the other nodes for the port (membership section).
      co_await want_peer(to);
      co_return base::Error(ErrorKind::kUnavailable,
                            fmt::format("client port of node {} not known yet (asking the other "
                                        "nodes)",
                                        to));
    }
    st.forwarded.fetch_add(1, std::memory_order_relaxed);
    auto r = co_await it->second->call(std::move(request));
    if (!r.ok()) {
      // kIo: never sent (certainly not applied); kOutcomeUnknown: may have been.
      if (r.error().kind() == ErrorKind::kIo)
        co_return base::Error(ErrorKind::kUnavailable, r.error().message());
      co_return std::move(r).error();
    }
    co_return from_forwarded(std::move(*r));
  }

  // Where to send a request when this replica knows no leader of the shard
  // and was refused as not the leader: the other nodes in turn. One that
  // leads the shard serves it; another answers with the leader it knows
  // (NORIMOVED), which the retry follows. Needed by a replica that restarted
  // after missing the configuration change that added the shard's leader:
  // it lacks that node's Raft address, so it cannot reach it, and the
  // followers it can reach ignore its pre-votes while their leader is live
  // (docs/node.md, "Quiescence"); it may stay leaderless for a long time
  // (docs/kv.md, "Weak spots"). kNoNode if no other node is known.
  raft::NodeId peer_to_ask(int attempt) {
    auto& links = here().links;
    if (links.empty()) return raft::kNoNode;
    auto it = links.begin();
    std::advance(it, static_cast<size_t>(attempt) % links.size());
    return it->first;
  }

  // Runs attempt(target) (one try of a write to group g, on this node when
  // target is this node, else forwarded to target) until it succeeds, fails
  // for certain past the deadline, or stays unknown past the deadline. The
  // error returned says which: kOutcomeUnknown if any attempt may have
  // applied, else the last certain failure (error_reply maps both).
  template <typename T, typename Attempt>
  Task<base::Result<T>> with_retries(GroupId g, Attempt attempt) {
    const auto deadline =
        base::BootClock::now() + std::chrono::milliseconds(cfg().write_timeout_ms);
    bool maybe_applied = false;
    std::optional<base::Error> last;
    raft::NodeId target = node().leader(g);
    for (int attempt_no = 0;; ++attempt_no) {
      if (attempt_no > 0) here().retries.fetch_add(1, std::memory_order_relaxed);
      base::Result<T> r = co_await attempt(target);
      if (r.ok()) co_return r;
      const base::Error e = std::move(r).error();
      if (e.kind() == ErrorKind::kInvalidArgument) co_return e;
      if (e.may_have_taken_effect()) maybe_applied = true;
      last = e;
      if (base::BootClock::now() >= deadline) break;
      if (e.kind() == ErrorKind::kNotLeader && e.hint() != raft::kNoNode && e.hint() != target) {
        target = e.hint();
        continue;  // follow the hint at once
      }
      (void)co_await runtime::sleep_for(std::chrono::milliseconds(attempt_no < 3 ? 10 : 50));
      if (runtime::Reactor::here().runtime().stopping()) break;
      target = node().leader(g);
      if (target == raft::kNoNode && e.kind() == ErrorKind::kNotLeader)
        target = peer_to_ask(attempt_no);
    }
    if (maybe_applied) {
      here().err_unknown.fetch_add(1, std::memory_order_relaxed);
      co_return base::Error(ErrorKind::kOutcomeUnknown, last ? last->message() : "timed out");
    }
    if (last && last->kind() == ErrorKind::kNoQuorum) {
      here().err_clusterdown.fetch_add(1, std::memory_order_relaxed);
    } else {
      here().err_tryagain.fetch_add(1, std::memory_order_relaxed);
    }
    co_return last ? *last : base::Error(ErrorKind::kTimedOut, "timed out");
  }

  // One shard write, retried (with_retries); its reply or error reply.
  Task<std::string> write_shard(uint32_t shard_no, std::string entry, uint64_t client,
                                uint64_t seq) {
    const GroupId g = group_of_shard(shard_no);
    auto r = co_await with_retries<std::string>(
        g, [&](raft::NodeId target) -> Task<base::Result<std::string>> {
          if (target == raft::kNoNode || target == node().id()) {
            co_return co_await write_local_one(g, entry, client, seq);
          }
          std::vector<std::string> fwd = {"NORI.WRITE", std::to_string(g), "", entry};
          fwd[2] = s.auth_.tag(fwd[0], signed_args(fwd));
          co_return co_await forward(target, encode_command(fwd));
        });
    if (!r.ok()) co_return error_reply(r.error(), shard_no);
    co_return std::move(*r);
  }

  // The session header of the connection's next write to a shard.
  static WriteHeader next_header(Conn& c, uint32_t shard_no, uint64_t now) {
    WriteHeader h;
    h.client = c.id;
    h.seq = ++c.next_seq;
    c.outstanding.insert(h.seq);
    h.ack_below = *c.outstanding.begin();
    h.now_ms = now;
    h.opens_session = !c.shards_answered.contains(shard_no);
    return h;
  }
  // A write was answered: its seq leaves the outstanding set, and a shard
  // that answered without an error holds the session from now on.
  static void finish_write(Conn& c, uint32_t shard_no, uint64_t seq, const std::string& reply) {
    c.outstanding.erase(seq);
    if (reply[0] != '-' && !c.shards_answered.contains(shard_no)) {
      c.shards_answered.insert(shard_no);
    }
  }

  // A run of two or more pipelined writes of one connection. Each write is
  // split into its shards' parts (one for a single-key write; see
  // split_by_shard), and each shard's parts, in pipeline order, go to the log
  // as batch entries (kv/store.h encode_batch; at most
  // write_batch_bytes_max each): one proposal and one wait per batch,
  // proposed here when this node leads the shard, else forwarded to the
  // leader as one NORI.WRITEB. A shard's batches run one after another and
  // a failed attempt retries the whole batch, so every shard applies the
  // run's writes in pipeline order on every path; shards run concurrently.
  // Replies in pipeline order, concatenated.
  struct BatchPart {
    uint32_t shard = 0;
    std::vector<size_t> at;  // indices of the parts' replies (write_run)
    std::vector<uint64_t> seqs;
    std::vector<std::string> entries;  // encode_write of each
    size_t bytes = 0;
  };
  Task<std::string> write_run(Conn& c, std::vector<std::vector<std::string>> cmds) {
    here().commands.fetch_add(cmds.size(), std::memory_order_relaxed);
    co_return co_await write_parts(c, std::move(cmds));
  }

  // write_run without counting the commands (a multi-key write() counted
  // itself): chunk after chunk.
  Task<std::string> write_parts(Conn& c, std::vector<std::vector<std::string>> cmds) {
    std::string out;
    for (size_t k = 0; k < cmds.size();)
      k = co_await write_chunk(c, cmds, k, out);
    co_return out;
  }

  // The commands of a run from `first` on whose shard parts number at most
  // pipeline_max (at least one command): a connection never has more writes
  // outstanding than a session keeps replies for (session_replies_max
  // exceeds pipeline_max; store.h), even when multi-key writes split into
  // many parts. Appends their replies to `out`; returns where it stopped.
  Task<size_t> write_chunk(Conn& c, std::vector<std::vector<std::string>>& cmds, size_t first,
                           std::string& out) {
    const uint64_t now = wall_ms();
    std::vector<std::string> replies;       // per command of the chunk
    std::vector<std::string> part_replies;  // per shard part
    // Per command: its parts' reply indices (empty: answered already) and
    // whether it is a DEL (combine_replies).
    std::vector<std::vector<size_t>> parts_of;
    std::vector<bool> is_del;
    std::map<uint32_t, std::vector<BatchPart>> batches;  // shard -> its batches, in order
    size_t k = first;
    for (; k < cmds.size(); ++k) {
      const size_t i = k - first;
      replies.emplace_back();
      parts_of.emplace_back();
      is_del.push_back(false);
      if (auto e = arity_error(cmds[k])) {
        replies[i] = std::move(*e);
        continue;
      }
      // At most this many shard parts (split_by_shard): decided before the
      // command is taken, so a command left for the next chunk is untouched.
      const std::string name = upper(cmds[k][0]);
      const size_t keys = name == "DEL"    ? cmds[k].size() - 1
                          : name == "MSET" ? (cmds[k].size() - 1) / 2
                                           : 1;
      const size_t parts_max = std::min<size_t>(std::max<size_t>(keys, 1), cfg().shards);
      if (i > 0 && part_replies.size() + parts_max > cfg().pipeline_max) {
        replies.pop_back();
        parts_of.pop_back();
        is_del.pop_back();
        break;
      }
      auto norm = normalize_write(std::move(cmds[k]), now);
      if (!norm.ok()) {
        replies[i] = err(norm.error().message());
        continue;
      }
      is_del[i] = (*norm)[0] == "DEL";
      auto parts = split_by_shard(std::move(*norm), cfg().shards);
      for (auto& [shard_no, part] : parts) {
        const WriteHeader h = next_header(c, shard_no, now);
        std::string entry = encode_write(h, part);
        auto& list = batches[shard_no];
        if (list.empty() || list.back().bytes + entry.size() > cfg().write_batch_bytes_max ||
            list.back().entries.size() == kBatchWritesMax) {
          list.emplace_back();
          list.back().shard = shard_no;
        }
        BatchPart& b = list.back();
        b.at.push_back(part_replies.size());
        parts_of[i].push_back(part_replies.size());
        part_replies.emplace_back();
        b.seqs.push_back(h.seq);
        b.bytes += entry.size();
        b.entries.push_back(std::move(entry));
      }
    }
    std::vector<Task<void>> tasks;
    for (auto& [shard_no, list] : batches)
      tasks.push_back(write_batches(c, std::move(list), part_replies));
    if (!tasks.empty()) (void)co_await runtime::when_all(std::move(tasks));
    for (size_t i = 0; i < replies.size(); ++i) {
      if (parts_of[i].empty()) {
        out += replies[i];
        continue;
      }
      std::vector<std::string> rs;
      for (size_t j : parts_of[i])
        rs.push_back(std::move(part_replies[j]));
      out += combine_replies(is_del[i], std::move(rs));
    }
    co_return k;
  }

  // One shard's batches of a run, one after another (pipeline order).
  Task<void> write_batches(Conn& c, std::vector<BatchPart> list,
                           std::vector<std::string>& replies) {
    for (BatchPart& b : list)
      co_await write_batch(c, std::move(b), replies);
  }

  // One shard's part of a run (write_run): a batch entry, retried whole; a
  // single write (or a leader that knows no batches) write by write.
  Task<void> write_batch(Conn& c, BatchPart p, std::vector<std::string>& replies) {
    const uint32_t shard_no = p.shard;
    const GroupId g = group_of_shard(shard_no);
    if (p.entries.size() >= 2) {
      // Retried whole, like one write: every copy of the batch that reaches
      // the log applies its writes in pipeline order, and each write once
      // (its session number deduplicates a copy that committed late).
      const std::string batch = encode_batch(p.entries);
      bool unsupported = false;  // the leader knows no NORI.WRITEB (an older node)
      auto r = co_await with_retries<std::vector<std::string>>(
          g, [&](raft::NodeId target) -> Task<base::Result<std::vector<std::string>>> {
            if (target == raft::kNoNode || target == node().id()) {
              co_return co_await write_local(g, batch, c.id, p.seqs);
            }
            auto f = co_await forward_batch(target, g, batch, p.entries.size());
            if (!f.ok() && f.error().message().starts_with("ERR unknown command")) {
              unsupported = true;
              co_return base::Error(ErrorKind::kInvalidArgument, f.error().message());
            }
            co_return f;
          });
      if (!unsupported) {
        here().batches.fetch_add(1, std::memory_order_relaxed);
        here().batched_writes.fetch_add(p.at.size(), std::memory_order_relaxed);
        for (size_t k = 0; k < p.at.size(); ++k) {
          replies[p.at[k]] = r.ok() ? std::move((*r)[k]) : error_reply(r.error(), shard_no);
          finish_write(c, shard_no, p.seqs[k], replies[p.at[k]]);
        }
        co_return;
      }
      // Certainly not applied (the leader refused the command): write by
      // write, with the same session numbers.
    }
    std::vector<Task<std::string>> tasks;
    for (size_t k = 0; k < p.at.size(); ++k)
      tasks.push_back(write_shard(shard_no, std::move(p.entries[k]), c.id, p.seqs[k]));
    std::vector<std::string> rs = co_await runtime::when_all(std::move(tasks));
    for (size_t k = 0; k < p.at.size(); ++k) {
      replies[p.at[k]] = std::move(rs[k]);
      finish_write(c, shard_no, p.seqs[k], replies[p.at[k]]);
    }
  }

  // "-ERR wrong number of arguments" for a known command, else nothing.
  static std::optional<std::string> arity_error(const std::vector<std::string>& argv) {
    const CommandSpec* spec = find_command(argv[0]);
    if (spec == nullptr) return std::nullopt;
    const int n = static_cast<int>(argv.size());
    if ((spec->arity > 0 && n != spec->arity) || (spec->arity < 0 && n < -spec->arity)) {
      return err(fmt::format("ERR wrong number of arguments for '{}' command", spec->name));
    }
    return std::nullopt;
  }

  // A multi-key write's per-shard parts (DEL and MSET; each part is one
  // shard's write, atomic on its own); a single-key write is its own part.
  static std::map<uint32_t, std::vector<std::string>> split_by_shard(std::vector<std::string> cmd,
                                                                     uint32_t shards) {
    std::map<uint32_t, std::vector<std::string>> parts;
    if (cmd[0] == "DEL") {
      for (size_t i = 1; i < cmd.size(); ++i) {
        auto& p = parts[shard_of(cmd[i], shards)];
        if (p.empty()) p.push_back("DEL");
        p.push_back(cmd[i]);
      }
    } else if (cmd[0] == "MSET") {
      for (size_t i = 1; i + 1 < cmd.size(); i += 2) {
        auto& p = parts[shard_of(cmd[i], shards)];
        if (p.empty()) p.push_back("MSET");
        p.push_back(cmd[i]);
        p.push_back(cmd[i + 1]);
      }
    } else {
      const uint32_t shard_no = shard_of(cmd[1], shards);
      parts.emplace(shard_no, std::move(cmd));
    }
    return parts;
  }

  // The client's reply to a write from its parts' replies, in shard order.
  // Multi-shard: each shard's part is atomic, the whole is not.
  static std::string combine_replies(bool del, std::vector<std::string> replies) {
    if (replies.size() == 1) return std::move(replies[0]);
    int64_t deleted = 0;
    bool any_ok = false;
    std::string first_err;
    for (auto& r : replies) {
      if (r[0] == '-') {
        if (first_err.empty()) first_err = r;
      } else {
        any_ok = true;
        if (r[0] == ':') deleted += std::strtoll(r.c_str() + 1, nullptr, 10);
      }
    }
    if (!first_err.empty()) {
      if (any_ok) {
        return err("UNKNOWN partially applied: some shards took the command, others failed: " +
                   first_err.substr(1, first_err.size() - 3));
      }
      return first_err;
    }
    if (del) {
      std::string out;
      reply::integer(out, deleted);
      return out;
    }
    return reply::ok();
  }

  // A client write: one session entry per shard it touches.
  Task<std::string> write(Conn& c, std::vector<std::string> argv) {
    const std::string name = upper(argv[0]);
    if (name == "DEL" || name == "MSET") {
      // Multi-key: its shards' parts, concurrently, as a pipeline's are.
      std::vector<std::vector<std::string>> one;
      one.push_back(std::move(argv));
      co_return co_await write_parts(c, std::move(one));
    }
    // One key, one shard: the common case goes without the split (no
    // per-shard map, task vector or when_all per command).
    const uint64_t now = wall_ms();
    auto norm = normalize_write(std::move(argv), now);
    if (!norm.ok()) co_return err(norm.error().message());
    const uint32_t shard_no = shard_of((*norm)[1], cfg().shards);
    const WriteHeader h = next_header(c, shard_no, now);
    std::string r = co_await write_shard(shard_no, encode_write(h, *norm), h.client, h.seq);
    finish_write(c, shard_no, h.seq, r);
    co_return r;
  }

  // ---- reads ------------------------------------------------------------------

  // On the group's core.
  Task<base::Result<std::string>> read_here(GroupId g, std::vector<std::string> argv,
                                            raft::ReadMode mode) {
    if (mode != raft::ReadMode::kStaleNoGuarantee) {
      auto st = co_await node().read(g, mode);
      if (!st.ok()) co_return std::move(st).error();
    }
    co_return shard(g).store.read(argv, wall_ms());
  }

  Task<base::Result<std::string>> read_local(GroupId g, std::vector<std::string> argv,
                                             raft::ReadMode mode) {
    co_return co_await runtime::submit_to(node().core_of(g),
                                          [this, g, argv = std::move(argv), mode]() mutable {
                                            return read_here(g, std::move(argv), mode);
                                          });
  }

  Task<std::string> read_shard(uint32_t shard_no, std::vector<std::string> argv, bool stale) {
    const GroupId g = group_of_shard(shard_no);
    if (stale) {
      auto r = co_await read_local(g, std::move(argv), raft::ReadMode::kStaleNoGuarantee);
      co_return r.ok() ? std::move(*r) : error_reply(r.error(), shard_no);
    }
    const auto deadline =
        base::BootClock::now() + std::chrono::milliseconds(cfg().write_timeout_ms);
    raft::NodeId target = node().leader(g);
    std::optional<base::Error> last;
    for (int attempt = 0;; ++attempt) {
      base::Result<std::string> r = base::Error(ErrorKind::kUnavailable, "no leader known");
      if (target == raft::kNoNode || target == node().id()) {
        r = co_await read_local(g, argv, cfg().read_mode);
      } else {
        std::vector<std::string> fwd = {"NORI.READ", std::to_string(g), ""};
        fwd.insert(fwd.end(), argv.begin(), argv.end());
        fwd[2] = s.auth_.tag(fwd[0], signed_args(fwd));
        r = co_await forward(target, encode_command(fwd));
      }
      if (r.ok()) co_return std::move(*r);
      last = std::move(r).error();
      // A read has no effect: every failure may be retried.
      if (base::BootClock::now() >= deadline) break;
      if (last->kind() == ErrorKind::kNotLeader && last->hint() != raft::kNoNode &&
          last->hint() != target) {
        target = last->hint();
        continue;
      }
      (void)co_await runtime::sleep_for(std::chrono::milliseconds(attempt < 3 ? 10 : 50));
      if (runtime::Reactor::here().runtime().stopping()) break;
      target = node().leader(g);
      if (target == raft::kNoNode && last->kind() == ErrorKind::kNotLeader) {
        target = peer_to_ask(attempt);
      }
    }
    // Unknown outcome of a read is still "not served": TRYAGAIN/CLUSTERDOWN.
    base::Error e = *last;
    if (e.kind() == ErrorKind::kOutcomeUnknown) e = base::Error(ErrorKind::kTimedOut, e.message());
    co_return error_reply(e, shard_no);
  }

  // A run of two or more pipelined commands that are not writes. The GETs
  // and STRLENs of a shard this node can serve (it leads the shard, or the
  // connection is READONLY) are served together: one hop to the shard's
  // core and one lease check (or read-index round) for all of them, then
  // each read against the Store. Everything else, and the reads of a shard
  // led elsewhere or whose check failed, runs command by command
  // (concurrently, as before). Replies in pipeline order, concatenated.
  Task<std::string> read_run(Conn& c, std::vector<std::vector<std::string>> cmds) {
    std::vector<std::string> replies(cmds.size());
    std::map<uint32_t, std::vector<size_t>> by_shard;
    std::vector<Task<void>> tasks;
    for (size_t k = 0; k < cmds.size(); ++k) {
      const std::string name = upper(cmds[k][0]);
      if ((name == "GET" || name == "STRLEN") && cmds[k].size() == 2) {
        here().commands.fetch_add(1, std::memory_order_relaxed);
        cmds[k][0] = name;
        by_shard[shard_of(cmds[k][1], cfg().shards)].push_back(k);
      } else {
        tasks.push_back(execute_into(c, std::move(cmds[k]), replies[k]));
      }
    }
    for (auto& [shard_no, at] : by_shard) {
      std::vector<std::vector<std::string>> reads;
      for (size_t k : at)
        reads.push_back(std::move(cmds[k]));
      tasks.push_back(read_batch(c, shard_no, std::move(at), std::move(reads), replies));
    }
    (void)co_await runtime::when_all(std::move(tasks));
    std::string out;
    for (auto& r : replies)
      out += r;
    co_return out;
  }

  Task<void> execute_into(Conn& c, std::vector<std::string> argv, std::string& reply) {
    reply = co_await execute(c, std::move(argv));
  }

  // One shard's single-key reads of a run (read_run).
  Task<void> read_batch(Conn& c, uint32_t shard_no, std::vector<size_t> at,
                        std::vector<std::vector<std::string>> reads,
                        std::vector<std::string>& replies) {
    const GroupId g = group_of_shard(shard_no);
    const raft::NodeId leader = node().leader(g);
    if (reads.size() >= 2 && (c.readonly || leader != raft::kNoNode)) {
      base::Result<std::vector<std::string>> r =
          c.readonly || leader == node().id()
              ? co_await read_batch_local(
                    g, reads, c.readonly ? raft::ReadMode::kStaleNoGuarantee : cfg().read_mode)
              : co_await forward_read_batch(leader, g, reads);
      if (r.ok()) {
        for (size_t k = 0; k < at.size(); ++k)
          replies[at[k]] = std::move((*r)[k]);
        co_return;
      }
    }
    std::vector<Task<std::string>> tasks;
    for (auto& argv : reads)
      tasks.push_back(read_shard(shard_no, std::move(argv), c.readonly));
    std::vector<std::string> rs = co_await runtime::when_all(std::move(tasks));
    for (size_t k = 0; k < at.size(); ++k)
      replies[at[k]] = std::move(rs[k]);
  }

  // The single-key reads of one shard after one check, on the shard's core.
  Task<base::Result<std::vector<std::string>>> read_batch_local(
      GroupId g, const std::vector<std::vector<std::string>>& reads, raft::ReadMode mode) {
    co_return co_await runtime::submit_to(
        node().core_of(g),
        [this, g, &reads, mode]() -> Task<base::Result<std::vector<std::string>>> {
          if (mode != raft::ReadMode::kStaleNoGuarantee) {
            auto st = co_await node().read(g, mode);
            if (!st.ok()) co_return std::move(st).error();
          }
          // Every read of the batch sees the state the check vouched for:
          // nothing runs on this core between the check and the last read.
          std::vector<std::string> out;
          const uint64_t now = wall_ms();
          auto& store = shard(g).store;
          for (const auto& argv : reads)
            out.push_back(store.read(argv, now));
          co_return out;
        });
  }

  // Sends a shard's pipelined reads to its leader as one NORI.READB
  // <group> <tag> <cmd> <key> [<cmd> <key> ...]; one reply per read.
  Task<base::Result<std::vector<std::string>>> forward_read_batch(
      raft::NodeId to, GroupId g, const std::vector<std::vector<std::string>>& reads) {
    std::vector<std::string> fwd = {"NORI.READB", std::to_string(g), ""};
    for (const auto& argv : reads) {
      fwd.push_back(argv[0]);
      fwd.push_back(argv[1]);
    }
    fwd[2] = s.auth_.tag(fwd[0], signed_args(fwd));
    auto r = co_await forward(to, encode_command(fwd));
    if (!r.ok()) co_return std::move(r).error();
    co_return split_array_reply(*r, reads.size());
  }

  // "*<n>\r\n" and n replies, nothing else: the n replies. A "-..." reply
  // this node does not map (from_forwarded maps the rest), such as an older
  // node's "-ERR unknown command", is kUnavailable (not applied); any other
  // shape kOutcomeUnknown.
  base::Result<std::vector<std::string>> split_array_reply(std::string_view v, size_t n) {
    if (v.starts_with("-")) {
      return base::Error(ErrorKind::kUnavailable, std::string(v.substr(1, v.find('\r') - 1)));
    }
    std::vector<std::string> out;
    const std::string header = fmt::format("*{}\r\n", n);
    if (v.starts_with(header)) {
      v.remove_prefix(header.size());
      while (!v.empty() && out.size() < n) {
        auto len = scan_reply(v, cfg().forward.limits);
        if (!len.ok() || *len == 0) break;
        out.emplace_back(v.substr(0, *len));
        v.remove_prefix(*len);
      }
    }
    if (out.size() != n || !v.empty()) {
      return base::Error(ErrorKind::kOutcomeUnknown, "malformed reply to a forwarded batch");
    }
    return out;
  }

  Task<std::string> read(Conn& c, std::vector<std::string> argv) {
    argv[0] = upper(argv[0]);
    const uint32_t n = cfg().shards;
    if (argv[0] == "GET" || argv[0] == "STRLEN") {
      co_return co_await read_shard(shard_of(argv[1], n), std::move(argv), c.readonly);
    }
    // MGET / EXISTS: per shard, then merged in the client's key order.
    std::map<uint32_t, std::vector<std::string>> parts;
    std::vector<uint32_t> key_shard;
    for (size_t i = 1; i < argv.size(); ++i) {
      const uint32_t sh = shard_of(argv[i], n);
      auto& p = parts[sh];
      if (p.empty()) p.push_back(argv[0]);
      p.push_back(argv[i]);
      key_shard.push_back(sh);
    }
    std::vector<Task<std::string>> tasks;
    for (auto& [sh, p] : parts)
      tasks.push_back(read_shard(sh, p, c.readonly));
    std::vector<std::string> replies = co_await runtime::when_all(std::move(tasks));
    std::map<uint32_t, std::string_view> by_shard;
    size_t i = 0;
    for (auto& [sh, p] : parts) {
      if (replies[i][0] == '-') co_return replies[i];
      by_shard[sh] = replies[i];
      ++i;
    }
    std::string out;
    if (argv[0] == "EXISTS") {
      int64_t total = 0;
      for (auto& [sh, r] : by_shard)
        total += std::strtoll(std::string(r.substr(1)).c_str(), nullptr, 10);
      reply::integer(out, total);
      co_return out;
    }
    // MGET: walk each shard's array in order.
    std::map<uint32_t, std::string_view> rest;
    for (auto& [sh, r] : by_shard) {
      auto hdr = r.find("\r\n");
      rest[sh] = r.substr(hdr + 2);
    }
    reply::array_header(out, key_shard.size());
    for (uint32_t sh : key_shard) {
      std::string_view& r = rest[sh];
      auto len = scan_reply(r, cfg().limits);
      NORI_ASSERT(len.ok() && *len > 0, "malformed MGET part");
      out.append(r.substr(0, *len));
      r.remove_prefix(*len);
    }
    co_return out;
  }

  // ---- internal forwarded commands (leader side) --------------------------------

  // Internal commands: [name, group, tag, rest...]; the tag covers every
  // argument but itself (kv/auth.h).
  static std::vector<std::string> signed_args(const std::vector<std::string>& argv) {
    std::vector<std::string> args;
    args.reserve(argv.size() - 2);
    args.push_back(argv[1]);
    args.insert(args.end(), argv.begin() + 3, argv.end());
    return args;
  }
  bool authentic(const std::vector<std::string>& argv) const {
    return argv.size() >= 3 && s.auth_.verify(upper(argv[0]), signed_args(argv), argv[2]);
  }

  Task<std::string> nori_write(std::vector<std::string>& argv) {
    if (argv.size() != 4) co_return err("ERR wrong number of arguments for 'nori.write'");
    if (!authentic(argv)) co_return err("NOAUTH internal command with a bad cluster tag");
    const GroupId g = std::strtoull(argv[1].c_str(), nullptr, 10);
    if (g == 0 || g > cfg().shards) co_return err("ERR no such shard");
    // The whole entry is checked before it can reach the log: a malformed
    // one would be refused at apply on every replica anyway (store.h).
    WriteHeader h;
    std::vector<std::string> cmd;
    if (!decode_write(argv[3], h, cmd) || !well_formed_write(cmd) || h.client == 0) {
      co_return err("ERR malformed forwarded entry");
    }
    const uint64_t client = h.client, seq = h.seq;
    auto res = co_await write_local_one(g, std::move(argv[3]), client, seq);
    if (res.ok()) co_return std::move(*res);
    if (res.error().kind() == ErrorKind::kNotLeader) {
      co_return fmt::format("{}{}\r\n", kMovedPrefix, res.error().hint());
    }
    co_return error_reply(res.error(), static_cast<uint32_t>(g - 1));
  }

  // NORI.WRITEB <group> <tag> <batch entry>: a follower's batch of one
  // connection's pipelined writes (write_batch). Answers an array of the
  // writes' replies, in order, or one error for the whole batch (then the
  // forwarder sends the writes one by one, with the same session numbers).
  Task<std::string> nori_write_batch(std::vector<std::string>& argv) {
    if (argv.size() != 4) co_return err("ERR wrong number of arguments for 'nori.writeb'");
    if (!authentic(argv)) co_return err("NOAUTH internal command with a bad cluster tag");
    const GroupId g = std::strtoull(argv[1].c_str(), nullptr, 10);
    if (g == 0 || g > cfg().shards) co_return err("ERR no such shard");
    std::vector<std::string_view> writes;
    std::vector<uint64_t> seqs;
    uint64_t client = 0;
    bool ok = decode_batch(argv[3], writes);
    for (size_t i = 0; ok && i < writes.size(); ++i) {
      WriteHeader h;
      std::vector<std::string> cmd;
      // One connection's writes: the proposer waits under the first one's
      // session, and finds every reply in that session.
      ok = decode_write(writes[i], h, cmd) && well_formed_write(cmd) && h.client != 0 &&
           (i == 0 || h.client == client);
      client = h.client;
      seqs.push_back(h.seq);
    }
    if (!ok) co_return err("ERR malformed forwarded batch");
    co_return batch_reply(co_await write_local(g, std::move(argv[3]), client, std::move(seqs)), g);
  }

  // A batch's answer to the forwarder: an array of the replies, or one
  // error for the batch (NORIMOVED for "not the leader").
  static std::string batch_reply(base::Result<std::vector<std::string>> res, GroupId g) {
    if (res.ok()) {
      std::string out;
      reply::array_header(out, res->size());
      for (auto& r : *res)
        out += r;
      return out;
    }
    if (res.error().kind() == ErrorKind::kNotLeader) {
      return fmt::format("{}{}\r\n", kMovedPrefix, res.error().hint());
    }
    return error_reply(res.error(), static_cast<uint32_t>(g - 1));
  }

  // Sends a batch entry to the leader (NORI.WRITEB); the replies, one per
  // write, or the error of the whole batch.
  Task<base::Result<std::vector<std::string>>> forward_batch(raft::NodeId to, GroupId g,
                                                             std::string entry, size_t writes) {
    std::vector<std::string> fwd = {"NORI.WRITEB", std::to_string(g), "", std::move(entry)};
    fwd[2] = s.auth_.tag(fwd[0], signed_args(fwd));
    auto r = co_await forward(to, encode_command(fwd));
    if (!r.ok()) co_return std::move(r).error();
    co_return split_array_reply(*r, writes);
  }

  // NORI.READB <group> <tag> <cmd> <key> [<cmd> <key> ...]: a follower's
  // pipelined GET/STRLEN reads of one shard (read_batch). One check for all
  // of them, then an array of their replies, or one error for the batch.
  Task<std::string> nori_read_batch(std::vector<std::string>& argv) {
    if (argv.size() < 7 || argv.size() % 2 != 1) {
      co_return err("ERR wrong number of arguments for 'nori.readb'");
    }
    if (!authentic(argv)) co_return err("NOAUTH internal command with a bad cluster tag");
    const GroupId g = std::strtoull(argv[1].c_str(), nullptr, 10);
    if (g == 0 || g > cfg().shards) co_return err("ERR no such shard");
    std::vector<std::vector<std::string>> reads;
    for (size_t i = 3; i + 1 < argv.size(); i += 2) {
      std::string name = upper(argv[i]);
      if (name != "GET" && name != "STRLEN") co_return err("ERR not a single-key read");
      reads.push_back({std::move(name), std::move(argv[i + 1])});
    }
    co_return batch_reply(co_await read_batch_local(g, reads, cfg().read_mode), g);
  }

  Task<std::string> nori_read(std::vector<std::string>& argv) {
    if (argv.size() < 4) co_return err("ERR wrong number of arguments for 'nori.read'");
    if (!authentic(argv)) co_return err("NOAUTH internal command with a bad cluster tag");
    const GroupId g = std::strtoull(argv[1].c_str(), nullptr, 10);
    if (g == 0 || g > cfg().shards) co_return err("ERR no such shard");
    std::vector<std::string> cmd(argv.begin() + 3, argv.end());
    const auto* spec = find_command(cmd[0]);
    if ((spec == nullptr || spec->kind != CommandKind::kRead) && upper(cmd[0]) != "DBSIZE") {
      co_return err("ERR not a read");
    }
    auto res = co_await read_local(g, std::move(cmd), cfg().read_mode);
    if (res.ok()) co_return std::move(*res);
    if (res.error().kind() == ErrorKind::kNotLeader) {
      co_return fmt::format("{}{}\r\n", kMovedPrefix, res.error().hint());
    }
    co_return error_reply(res.error(), static_cast<uint32_t>(g - 1));
  }

  // ---- membership (CLUSTER ADDNODE / REMOVENODE) -----------------------------------
  //
  // CLUSTER ADDNODE <id> <host:raft_port> <client_port>: every shard's group
  // admits node <id> (started with --join). Two parts, in this order:
  //   1. The client port, which only norikv needs (Raft addresses travel in
  //      the configuration entries): kept durably in this node's book
  //      (kv-peers) first, then announced to every node this one knows
  //      (NORI.PEER, authenticated like the forwarding commands, kv/auth.h),
  //      all at once and best effort: a node that is down, partitioned or
  //      slow to answer (bounded by the forward link's connect and reply
  //      timeouts) does not fail the command. Raft needs a majority of each
  //      shard for the change; the book must not demand more. A node that
  //      missed the announcement learns the port when it first needs it
  //      (below); the miss is logged and counted
  //      (kv_peer_announce_missed_total). Announced before the Raft side
  //      because the new node can lead a shard moments after its promotion,
  //      and the nodes that already know the port forward to it at once.
  //   2. The Raft side, one raft::Node::add_node call (raft/node/node.h,
  //      docs/node.md "Node-wide membership"): per group, add_member here if
  //      this node leads the group, else forwarded to its leader over the
  //      peer link (a node-control message), with not-leader, busy, no
  //      quorum and unanswered attempts retried until
  //      RaftConfig::member_change_timeout_ms (--member-change-timeout-ms).
  //      A group already in the wanted state is ok at once, so repeating
  //      the command after a partial failure is safe.
  // CLUSTER REMOVENODE <id>: raft::Node::remove_node the same way (a leader
  // that is the one removed hands over first). The client port stays in the
  // books: nobody forwards to a node that leads no shard.
  // Both wait for MemberWait::kAppended: +OK once every shard's first
  // configuration entry is in its leader's log; the learner's catch-up and
  // promotion then finish by themselves (a REMOVENODE issued meanwhile is
  // busy in those shards and retried within the same budget).
  //
  // Learning a missed client port (pull on demand): forward() to a leader
  // whose port this node does not know answers kUnavailable (the write or
  // read is retried until its deadline, then -TRYAGAIN: certainly not
  // applied) and asks core 0 to look the port up. Core 0 sends NORI.WHOIS
  // <id> <nonce> to every node whose port it knows, at once; a node that
  // knows the port answers [host, port, tag], the tag a MAC over the id, the
  // address and the caller's fresh nonce (so a reply can be neither forged
  // nor replayed from an earlier round without the cluster secret). The
  // first valid answer is kept durably (kv-peers) and installed on every
  // core; the caller's next retry forwards. Bounded: one round per id in
  // flight, rounds kPeerLookupIntervalMs apart, kPeerLookupsMax ids, each
  // ask bounded by the link's timeouts. The same path serves a node that
  // was down or partitioned during the announcement and one restarted with
  // an old book (docs/kv.md, "Membership").
  //
  // CLUSTER KEYSLOT <key>: the key's shard (0..shards-1), as Redis Cluster
  // answers its hash slot; with TRANSFER it lets an operator (or a test)
  // move the shard of a given key.
  // CLUSTER TRANSFER <shard> <node_id>: hands the shard's leadership to a
  // voter (raft::Node::transfer_leader); sent to the shard's current leader
  // (elsewhere: -ERR naming it). +OK once the handover has started; INFO
  // shows when it is done. For maintenance, and for tests that need a
  // particular node to lead.

  // At most this many failed shards are named in one error reply (the
  // count is always given): bounds the reply with --shards up to 65536.
  static constexpr size_t kMemberReplyShardsMax = 16;
  // Client-port lookups: ids tracked at once (a leader id this node cannot
  // forward to; a cluster has far fewer members), and the pause between two
  // rounds for the same id (a round that found nothing, e.g. every node
  // that knows the port is down, is not repeated faster than this).
  static constexpr size_t kPeerLookupsMax = 64;
  static constexpr uint32_t kPeerLookupIntervalMs = 250;

  // Makes `id`'s client port known on every core of this node, and durable
  // in <data-dir>/kv-peers (saved on core 0, which owns the book). The book
  // is saved first: once any core can forward to the port, a restart still
  // knows it.
  Task<base::Status> learn_peer(raft::NodeId id, std::string host, uint16_t port) {
    if (id != node().id()) {
      base::Status saved = co_await runtime::submit_to(0, [this, id, host, port]() -> base::Status {
        auto& book = here().learned;
        auto it = book.find(id);
        if (it != book.end() && it->second.host == host && it->second.port == port) return {};
        auto next = book;
        next[id] = PeerClientAddress{host, port};
        // The in-memory book changes only once the file holds it.
        NORI_TRY(save_peer_book(peer_book_path(), next));
        book = std::move(next);
        return {};
      });
      if (!saved.ok()) co_return saved;
    }
    for (unsigned core = 0; core < cfg().raft.cores; ++core) {
      co_await runtime::submit_to(core, [this, id, host, port] {
        auto& links = here().links;
        if (id != node().id() && !links.contains(id)) {
          links.emplace(id, std::make_unique<ForwardLink>(host, port, cfg().forward));
        }
      });
    }
    co_return base::Status{};
  }
  std::string peer_book_path() const { return cfg().raft.data_dir + "/kv-peers"; }

  // One internal command to a peer's client port (not a client's request:
  // not counted as forwarded). kUnavailable if its port is not known.
  Task<base::Result<std::string>> peer_call(raft::NodeId to, std::vector<std::string> argv) {
    argv[2] = s.auth_.tag(argv[0], signed_args(argv));
    auto& links = here().links;
    auto it = links.find(to);
    if (it == links.end()) {
      co_return base::Error(ErrorKind::kUnavailable, fmt::format("no client port for node {}", to));
    }
    co_return co_await it->second->call(encode_command(argv));
  }

  // The nodes whose client port this core knows, but `except`.
  std::vector<raft::NodeId> known_peers(raft::NodeId except) {
    std::vector<raft::NodeId> out;
    for (auto& [peer, link] : here().links) {
      if (peer != except) out.push_back(peer);
    }
    return out;
  }

  // Announces `id`'s client port to every node this one knows, at once;
  // returns the nodes that did not take it, each with why.
  Task<std::vector<std::string>> announce_peer(raft::NodeId id, const std::string& host,
                                               uint16_t port) {
    const std::vector<raft::NodeId> peers = known_peers(id);
    std::vector<Task<base::Result<std::string>>> calls;
    for (raft::NodeId peer : peers) {
      calls.push_back(
          peer_call(peer, {"NORI.PEER", "0", "", std::to_string(id), host, std::to_string(port)}));
    }
    auto replies = co_await runtime::when_all(std::move(calls));
    std::vector<std::string> missed;
    for (size_t i = 0; i < peers.size(); ++i) {
      const auto& r = replies[i];
      if (r.ok() && r->starts_with("+")) continue;
      std::string why = r.ok() ? r->substr(0, r->find_first_of("\r\n")) : r.error().to_string();
      missed.push_back(fmt::format("node {} ({})", peers[i], why));
    }
    co_return missed;
  }

  // On any core: this core cannot forward to `id`. Asks core 0 to look the
  // port up, at most once per kPeerLookupIntervalMs per id from this core.
  Task<void> want_peer(raft::NodeId id) {
    auto& st = here();
    const base::TimePoint now = base::BootClock::now();
    auto it = st.lookup_posted.find(id);
    if (it != st.lookup_posted.end() && now < it->second) co_return;
    if (it == st.lookup_posted.end() && st.lookup_posted.size() >= kPeerLookupsMax) {
      st.lookup_posted.clear();
    }
    st.lookup_posted[id] = now + std::chrono::milliseconds(kPeerLookupIntervalMs);
    // Not post() to this very core: its same-core path spawns the task and
    // then still sends the message (runtime.h, PostAwaitable::await_resume).
    if (runtime::Reactor::here().core() == 0) {
      runtime::spawn(lookup_peer(id));
    } else {
      co_await runtime::post(0, [this, id] { return lookup_peer(id); });
    }
  }

  // Core 0: one lookup round for `id`'s client port (see the section comment).
  Task<void> lookup_peer(raft::NodeId id) {
    auto& st = here();
    if (id == raft::kNoNode || id == node().id() || st.links.contains(id)) co_return;
    const base::TimePoint now = base::BootClock::now();
    if (!st.lookups.contains(id) && st.lookups.size() >= kPeerLookupsMax) {
      std::erase_if(st.lookups, [&](const auto& kv) {
        return !kv.second.in_flight && kv.second.next_at <= now;
      });
      if (st.lookups.size() >= kPeerLookupsMax) co_return;  // every slot busy: a later retry asks
    }
    auto& l = st.lookups[id];
    if (l.in_flight || now < l.next_at) co_return;
    l.in_flight = true;
    l.learned = false;
    st.peer_lookups.fetch_add(1, std::memory_order_relaxed);
    const uint64_t nonce = random_nonce();
    std::vector<Task<void>> asks;
    for (raft::NodeId peer : known_peers(id))
      asks.push_back(ask_peer(peer, id, nonce));
    // Waits for every answer (each bounded by its link's timeouts) so that
    // a round is never in flight twice; the first valid answer is taken at
    // once by ask_peer, so a slow node does not delay the learning.
    co_await runtime::when_all(std::move(asks));
    // Map references stay valid: an entry in flight is never erased.
    auto& done = st.lookups.at(id);
    done.in_flight = false;
    done.next_at = base::BootClock::now() + std::chrono::milliseconds(kPeerLookupIntervalMs);
    if (done.learned) st.lookups.erase(id);
  }

  // Core 0: asks `peer` for `id`'s client port; learns the first valid answer.
  Task<void> ask_peer(raft::NodeId peer, raft::NodeId id, uint64_t nonce) {
    const std::string ids = std::to_string(id), nonces = std::to_string(nonce);
    auto r = co_await peer_call(peer, {"NORI.WHOIS", "0", "", ids, nonces});
    if (!r.ok() || !r->starts_with("*")) co_return;  // down, or does not know it either
    // The answer is an array of bulk strings, the shape of a request.
    RequestParser parser(cfg().limits);
    std::vector<std::string> a;
    if (!parser.feed(*r).ok()) co_return;
    auto parsed = parser.next(a);
    if (!parsed.ok() || !*parsed || a.size() != 3) co_return;
    const std::vector<std::string> signed_reply = {ids, a[0], a[1], nonces};
    if (!s.auth_.verify("NORI.WHOIS.REPLY", signed_reply, a[2])) {
      fmt::print(stderr, "norikv: node {} answered NORI.WHOIS {} with a bad tag (ignored)\n", peer,
                 id);
      co_return;
    }
    const unsigned long port = std::strtoul(a[1].c_str(), nullptr, 10);
    if (port == 0 || port > 65535 || !net::parse_address(a[0], static_cast<uint16_t>(port)).ok()) {
      co_return;
    }
    auto& st = here();
    auto it = st.lookups.find(id);
    if (it == st.lookups.end() || it->second.learned || st.links.contains(id)) co_return;
    it->second.learned = true;  // before the await: the other answers are ignored
    base::Status learned = co_await learn_peer(id, a[0], static_cast<uint16_t>(port));
    if (!learned.ok()) {
      it = st.lookups.find(id);
      if (it != st.lookups.end()) it->second.learned = false;  // the next round tries again
      fmt::print(stderr, "norikv: client port of node {} from node {} not recorded: {}\n", id, peer,
                 learned.error().to_string());
      co_return;
    }
    st.peer_ports_learned.fetch_add(1, std::memory_order_relaxed);
    fmt::print(stderr, "norikv: learned node {}'s client port {}:{} from node {}\n", id, a[0], port,
               peer);
  }

  // NORI.WHOIS 0 <tag> <id> <nonce>: the client port of node <id> if this
  // node knows it ([host, port, tag]), else a null bulk.
  Task<std::string> nori_whois(std::vector<std::string>& argv) {
    if (argv.size() != 5) co_return err("ERR wrong number of arguments for 'nori.whois'");
    if (!authentic(argv)) co_return err("NOAUTH internal command with a bad cluster tag");
    const raft::NodeId id = std::strtoull(argv[3].c_str(), nullptr, 10);
    if (id == raft::kNoNode) co_return err("ERR bad nori.whois");
    std::optional<PeerClientAddress> known =
        co_await runtime::submit_to(0, [this, id]() -> std::optional<PeerClientAddress> {
          if (auto it = cfg().peer_clients.find(id); it != cfg().peer_clients.end()) {
            return it->second;
          }
          auto& book = here().learned;
          if (auto it = book.find(id); it != book.end()) return it->second;
          return std::nullopt;
        });
    std::string out;
    if (!known) {
      reply::null_bulk(out);
      co_return out;
    }
    const std::string port = std::to_string(known->port);
    const std::vector<std::string> signed_reply = {argv[3], known->host, port, argv[4]};
    reply::array_header(out, 3);
    reply::bulk(out, known->host);
    reply::bulk(out, port);
    reply::bulk(out, s.auth_.tag("NORI.WHOIS.REPLY", signed_reply));
    co_return out;
  }

  // A leader refuses a change its log already holds (kInvalidArgument:
  // "already a voter" / "not a member"). A repeated command meets that
  // while this replica has not yet seen the first one committed: Node's own
  // "already done" check reads this replica's committed configuration only.
  // Where this replica's latest configuration (committed or not) already
  // shows the wanted state, the shard counts as done: its leader's log
  // holds the change, which is what MemberWait::kAppended promises for a
  // first call too. Wanted: `id` a voter or a learner queued for promotion
  // (add); `id` in no set of a configuration that has voters (remove: a
  // node that joined and has no configuration yet knows nothing).
  Task<void> absorb_duplicates(bool add, raft::NodeId id, raft::Node::NodeChangeReport& report) {
    for (auto& [g, st] : report) {
      if (st.ok() || st.error().kind() != ErrorKind::kInvalidArgument) continue;
      base::Result<raft::Membership> m = co_await node().membership(g);
      if (!m.ok()) continue;
      const bool promoting =
          std::find(m->promote.begin(), m->promote.end(), id) != m->promote.end();
      const bool there =
          add ? (m->is_voter(id) || promoting) : (!m->voters.empty() && !m->contains(id));
      if (there) st = base::Status{};
    }
  }

  // The reply to a node-wide change. +OK when every shard's change
  // succeeded. Otherwise -ERR naming the failed shards (up to
  // kMemberReplyShardsMax), each with its error and whether the change may
  // have taken effect there (kOutcomeUnknown: an unanswered attempt may have
  // run) or certainly did not (every other kind). A shard missing from the
  // report (its group is not hosted on this node) did not take effect.
  std::string membership_reply(std::string_view what, const raft::Node::NodeChangeReport& report) {
    size_t failed = 0, maybe = 0;
    std::string detail;
    for (uint32_t sh = 0; sh < cfg().shards; ++sh) {
      auto it = report.find(group_of_shard(sh));
      std::string why;
      if (it == report.end()) {
        why = "not hosted on this node (not applied)";
      } else if (!it->second.ok()) {
        const base::Error& e = it->second.error();
        if (e.may_have_taken_effect()) ++maybe;
        why = fmt::format("{} ({})", e.to_string(),
                          e.may_have_taken_effect() ? "may have taken effect" : "not applied");
      } else {
        continue;
      }
      // Bracketed: the library's messages contain "; " themselves.
      if (failed++ < kMemberReplyShardsMax) {
        detail += fmt::format("{}[shard {}: {}]", detail.empty() ? "" : " ", sh, why);
      }
    }
    if (failed == 0) return reply::ok();
    if (failed > kMemberReplyShardsMax) {
      detail += fmt::format(" [and {} more]", failed - kMemberReplyShardsMax);
    }
    std::string summary =
        maybe == 0 ? std::string("the change did not take effect in them")
                   : fmt::format("the change may have taken effect in {} of them", maybe);
    if (failed < cfg().shards) {
      summary += fmt::format("; the other {} succeeded", cfg().shards - failed);
    }
    return err(
        fmt::format("ERR {} failed in {} of {} shards ({}; repeating the command is safe): {}",
                    what, failed, cfg().shards, summary, detail));
  }

  Task<std::string> cluster(std::vector<std::string>& argv) {
    const std::string sub = argv.size() > 1 ? upper(argv[1]) : std::string();
    const bool add = sub == "ADDNODE" && argv.size() == 5;
    const bool remove = sub == "REMOVENODE" && argv.size() == 3;
    const bool transfer = sub == "TRANSFER" && argv.size() == 4;
    if (sub == "KEYSLOT" && argv.size() == 3) {
      std::string out;  // the key's shard (Redis: its hash slot)
      reply::integer(out, shard_of(argv[2], cfg().shards));
      co_return out;
    }
    if (!add && !remove && !transfer) {
      co_return err(
          "ERR CLUSTER: ADDNODE <id> <host:raft_port> <client_port>, REMOVENODE <id>, "
          "TRANSFER <shard> <id> and KEYSLOT <key> are supported");
    }
    if (transfer) co_return co_await transfer_shard(argv[2], argv[3]);
    const raft::NodeId id = std::strtoull(argv[2].c_str(), nullptr, 10);
    if (id == raft::kNoNode) co_return err("ERR node id must be a positive integer");
    const std::string what = fmt::format("CLUSTER {} {}", sub, id);
    if (remove) {
      raft::Node::NodeChangeReport report = co_await node().remove_node(id);
      co_await absorb_duplicates(false, id, report);
      co_return membership_reply(what, report);
    }

    const std::string& addr = argv[3];
    const auto colon = addr.rfind(':');
    const unsigned long raft_port =
        colon == std::string::npos ? 0 : std::strtoul(addr.c_str() + colon + 1, nullptr, 10);
    const unsigned long client_port = std::strtoul(argv[4].c_str(), nullptr, 10);
    std::string host = colon == std::string::npos ? std::string() : addr.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);  // "[v6]:port"
    }
    // Checked before anything is written to the peer book: a bad address
    // would otherwise be kept (and announced) before every shard refused it.
    if (raft_port == 0 || raft_port > 65535 || client_port == 0 || client_port > 65535 ||
        !net::parse_address(host, static_cast<uint16_t>(client_port)).ok()) {
      co_return err(
          "ERR CLUSTER ADDNODE: want <id> <host:raft_port> <client_port> with a numeric host "
          "(IPv4, or [IPv6])");
    }
    const auto port = static_cast<uint16_t>(client_port);
    if (base::Status st = co_await learn_peer(id, host, port); !st.ok()) {
      co_return err(fmt::format("ERR {}: client port not recorded: {} (no shard changed)", what,
                                st.error().to_string()));
    }
    // Best effort (section comment): a node that misses it asks later.
    const std::vector<std::string> missed = co_await announce_peer(id, host, port);
    if (!missed.empty()) {
      here().peer_announce_missed.fetch_add(missed.size(), std::memory_order_relaxed);
      std::string who;
      for (const auto& m : missed)
        who += (who.empty() ? "" : ", ") + m;
      fmt::print(stderr,
                 "norikv: {}: not announced to {}; they ask for the client port when they first "
                 "forward to node {}\n",
                 what, who, id);
    }
    raft::Node::NodeChangeReport report = co_await node().add_node(id, addr);
    co_await absorb_duplicates(true, id, report);
    co_return membership_reply(what, report);
  }

  // CLUSTER TRANSFER <shard> <id> (section comment).
  Task<std::string> transfer_shard(const std::string& shard_arg, const std::string& id_arg) {
    char* end = nullptr;
    const unsigned long long sh = std::strtoull(shard_arg.c_str(), &end, 10);
    const raft::NodeId id = std::strtoull(id_arg.c_str(), nullptr, 10);
    if (shard_arg.empty() || *end != '\0' || sh >= cfg().shards || id == raft::kNoNode) {
      co_return err(
          fmt::format("ERR CLUSTER TRANSFER: want <shard> (0..{}) <node id>", cfg().shards - 1));
    }
    const GroupId g = group_of_shard(static_cast<uint32_t>(sh));
    base::Status st = co_await node().transfer_leader(g, id);
    if (st.ok()) co_return reply::ok();
    const base::Error& e = st.error();
    if (e.kind() == ErrorKind::kNotLeader) {
      co_return err(fmt::format(
          "ERR CLUSTER TRANSFER: this node does not lead shard {} (leader: node {}); send it there",
          sh, e.hint()));
    }
    co_return err(
        fmt::format("ERR CLUSTER TRANSFER shard {} to node {}: {}", sh, id, e.to_string()));
  }

  // NORI.PEER 0 <tag> <id> <host> <client_port>: learn a node's client port.
  Task<std::string> nori_peer(std::vector<std::string>& argv) {
    if (argv.size() != 6) co_return err("ERR wrong number of arguments for 'nori.peer'");
    if (!authentic(argv)) co_return err("NOAUTH internal command with a bad cluster tag");
    const raft::NodeId id = std::strtoull(argv[3].c_str(), nullptr, 10);
    const unsigned long port = std::strtoul(argv[5].c_str(), nullptr, 10);
    if (id == raft::kNoNode || port == 0 || port > 65535) co_return err("ERR bad nori.peer");
    base::Status st = co_await learn_peer(id, argv[4], static_cast<uint16_t>(port));
    if (!st.ok()) co_return err(fmt::format("ERR nori.peer: {}", st.error().to_string()));
    co_return reply::ok();
  }

  // ---- local commands -------------------------------------------------------------

  // INFO's "# Peers" section: the client ports this node forwards to (core
  // 0's links and book; the links of every core follow core 0's).
  Task<std::string> peers_info() {
    co_return co_await runtime::submit_to(0, [this] {
      // As start() builds the links: --cluster first, then the book.
      std::map<raft::NodeId, PeerClientAddress> all = cfg().peer_clients;
      for (const auto& [id, a] : here().learned)
        all.try_emplace(id, a);
      std::string out = fmt::format("# Peers\r\npeer_client_ports:{}\r\n", here().links.size());
      for (const auto& [id, a] : all) {
        if (id == node().id() || !here().links.contains(id)) continue;
        out += fmt::format("peer{}:client={}:{}\r\n", id, a.host, a.port);
      }
      return out;
    });
  }

  std::string info(const std::string& peers) {
    std::string body = "# Server\r\nredis_version:7.0.0-norikv\r\nnorikv_version:0.1.0\r\n";
    body += fmt::format("node_id:{}\r\nshards:{}\r\ncores:{}\r\nread_mode:{}\r\n", node().id(),
                        cfg().shards, cfg().raft.cores, raft::to_string(cfg().read_mode));
    body += "# Clients\r\n";
    body += fmt::format("connected_clients:{}\r\n", s.connections_.load());
    body += "# Replication\r\n";
    uint32_t led = 0;
    for (uint32_t sh = 0; sh < cfg().shards; ++sh)
      led += node().is_leader(group_of_shard(sh));
    body += fmt::format("role:{}\r\nshards_led:{}\r\n", led > 0 ? "master" : "slave", led);
    for (uint32_t sh = 0; sh < cfg().shards; ++sh) {
      const GroupId g = group_of_shard(sh);
      body += fmt::format("shard{}:group={},role={},leader={}\r\n", sh, g,
                          node().is_leader(g) ? "leader" : "follower", node().leader(g));
    }
    body += "# Stats\r\n";
    uint64_t cmds = 0, fwd = 0, retries = 0;
    for (auto& c : s.cores_) {
      cmds += c->commands.load(std::memory_order_relaxed);
      fwd += c->forwarded.load(std::memory_order_relaxed);
      retries += c->retries.load(std::memory_order_relaxed);
    }
    body += fmt::format("total_commands_processed:{}\r\nforwarded_requests:{}\r\nretries:{}\r\n",
                        cmds, fwd, retries);
    body += peers;
    std::string out;
    reply::bulk(out, body);
    return out;
  }

  Task<std::string> bgsave() {
    std::vector<std::string> errors;
    for (uint32_t sh = 0; sh < cfg().shards; ++sh) {
      const GroupId g = group_of_shard(sh);
      if (!node().is_leader(g)) continue;
      auto st = co_await runtime::submit_to(node().core_of(g),
                                            [this, g] { return node().trigger_snapshot(g); });
      if (!st.ok()) errors.push_back(fmt::format("shard {}: {}", sh, st.error().to_string()));
    }
    if (!errors.empty()) co_return err("ERR BGSAVE: " + errors.front());
    co_return std::string("+Background saving started\r\n");
  }

  Task<std::string> local(Conn& c, std::vector<std::string>& argv) {
    const std::string cmd = upper(argv[0]);
    std::string out;
    if (cmd == "PING") {
      if (argv.size() == 1) co_return std::string("+PONG\r\n");
      reply::bulk(out, argv[1]);
      co_return out;
    }
    if (cmd == "ECHO") {
      reply::bulk(out, argv[1]);
      co_return out;
    }
    if (cmd == "QUIT") {
      c.quit = true;
      co_return reply::ok();
    }
    if (cmd == "READONLY") {
      c.readonly = true;
      co_return reply::ok();
    }
    if (cmd == "READWRITE") {
      c.readonly = false;
      co_return reply::ok();
    }
    if (cmd == "SELECT") {
      if (argv[1] == "0") co_return reply::ok();
      co_return err("ERR DB index is out of range");
    }
    if (cmd == "CLIENT") co_return reply::ok();
    if (cmd == "INFO") co_return info(co_await peers_info());
    if (cmd == "BGSAVE") co_return co_await bgsave();
    if (cmd == "DBSIZE") {
      // Sum of every shard's size, each read linearizably (or stale after READONLY).
      std::vector<Task<std::string>> tasks;
      for (uint32_t sh = 0; sh < cfg().shards; ++sh)
        tasks.push_back(read_shard(sh, {"DBSIZE"}, c.readonly));
      std::vector<std::string> replies = co_await runtime::when_all(std::move(tasks));
      int64_t total = 0;
      for (auto& r : replies) {
        if (r[0] == '-') co_return r;
        total += std::strtoll(r.c_str() + 1, nullptr, 10);
      }
      reply::integer(out, total);
      co_return out;
    }
    if (cmd == "COMMAND") {
      // "COMMAND" (and COMMAND DOCS/COUNT) for clients that probe: the table.
      if (argv.size() >= 2 && upper(argv[1]) == "COUNT") {
        reply::integer(out, static_cast<int64_t>(command_table().size()));
        co_return out;
      }
      if (argv.size() >= 2 && upper(argv[1]) == "DOCS") {
        reply::array_header(out, 0);
        co_return out;
      }
      reply::array_header(out, command_table().size());
      for (const auto& spec : command_table()) {
        reply::array_header(out, 6);
        std::string lower(spec.name);
        for (char& ch : lower)
          ch = static_cast<char>(std::tolower(ch));
        reply::bulk(out, lower);
        reply::integer(out, spec.arity);
        reply::array_header(out, 1);
        reply::simple(out, spec.kind == CommandKind::kWrite ? "write" : "readonly");
        reply::integer(out, spec.first_key);
        reply::integer(out, spec.first_key == 0
                                ? 0
                                : (spec.key_step == 1 ? -1 : (spec.key_step == 2 ? -1 : 1)));
        reply::integer(out, spec.key_step == 0 ? 1 : spec.key_step);
      }
      co_return out;
    }
    if (cmd == "CONFIG") {
      if (upper(argv[1]) != "GET" || argv.size() != 3) {
        co_return err("ERR CONFIG: only CONFIG GET <parameter> is supported");
      }
      const std::string p = argv[2];
      const std::map<std::string, std::string> known = {
          {"save", ""},
          {"appendonly", "yes"},
          {"appendfsync", "always"},
          {"databases", "1"},
          {"maxclients", std::to_string(cfg().connections_max)},
          {"port", std::to_string(cfg().client_port)},
      };
      std::vector<std::pair<std::string, std::string>> hits;
      for (auto& [k, v] : known) {
        if (p == "*" || p == k) hits.emplace_back(k, v);
      }
      reply::array_header(out, hits.size() * 2);
      for (auto& [k, v] : hits) {
        reply::bulk(out, k);
        reply::bulk(out, v);
      }
      co_return out;
    }
    if (cmd == "CLUSTER") co_return co_await cluster(argv);
    co_return err(fmt::format("ERR unknown command '{}'", argv[0]));
  }

  // ---- dispatch ---------------------------------------------------------------------

  Task<std::string> execute(Conn& c, std::vector<std::string> argv) {
    here().commands.fetch_add(1, std::memory_order_relaxed);
    const std::string name = upper(argv[0]);
    if (name == "NORI.WRITE") co_return co_await nori_write(argv);
    if (name == "NORI.WRITEB") co_return co_await nori_write_batch(argv);
    if (name == "NORI.READ") co_return co_await nori_read(argv);
    if (name == "NORI.READB") co_return co_await nori_read_batch(argv);
    if (name == "NORI.PEER") co_return co_await nori_peer(argv);
    if (name == "NORI.WHOIS") co_return co_await nori_whois(argv);
    const CommandSpec* spec = find_command(argv[0]);
    if (spec == nullptr) {
      co_return err(fmt::format("ERR unknown command '{}'", argv[0].substr(0, 64)));
    }
    if (auto e = arity_error(argv)) co_return std::move(*e);
    switch (spec->kind) {
      case CommandKind::kWrite:
        co_return co_await write(c, std::move(argv));
      case CommandKind::kRead:
        co_return co_await read(c, std::move(argv));
      case CommandKind::kLocal:
        co_return co_await local(c, argv);
    }
    NORI_PANIC("unreachable");
  }

  static bool is_write(const std::vector<std::string>& argv) {
    const CommandSpec* spec = find_command(argv[0]);
    return spec != nullptr && spec->kind == CommandKind::kWrite;
  }

  Task<void> connection(int fd) {
    auto& st = here();
    Conn c;
    const unsigned core = runtime::Reactor::here().core();
    const uint64_t seed[5] = {node().id(), node().incarnation(), st.boot_nonce, core,
                              ++st.next_conn};
    c.id = base::xxh3_64(seed, sizeof seed) | 1;  // non-zero
    RequestParser parser(cfg().limits);
    std::vector<char> buf(16384);
    std::string out;
    std::vector<std::vector<std::string>> batch;
    bool open = true;
    while (open && !c.quit) {
      base::Result<size_t> n = size_t{0};
      if (cfg().client_idle_timeout_ms == 0) {
        n = co_await io::recv(fd, buf.data(), buf.size());
      } else {
        // A silent client is closed after the idle timeout (a half-sent
        // command does not count as activity past its last byte).
        n = co_await runtime::with_timeout(
            std::chrono::milliseconds(cfg().client_idle_timeout_ms),
            [](int fd, char* b, size_t len) -> Task<base::Result<size_t>> {
              co_return co_await io::recv(fd, b, len);
            }(fd, buf.data(), buf.size()));
      }
      if (!n.ok() || *n == 0) break;
      if (auto fed = parser.feed(std::string_view(buf.data(), *n)); !fed.ok()) {
        st.protocol_errors.fetch_add(1, std::memory_order_relaxed);
        out = err("ERR " + fed.error().message());
        (void)co_await net::send_all(
            fd, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(out.data()), out.size()));
        break;
      }
      // Drain every complete command, pipeline_max at a time.
      while (open && !c.quit) {
        batch.clear();
        std::string protocol_err;
        std::vector<std::string> argv;
        while (batch.size() < cfg().pipeline_max) {
          auto r = parser.next(argv);
          if (!r.ok()) {
            protocol_err = err("ERR " + r.error().message());
            break;
          }
          if (!*r) break;
          if (!argv.empty()) batch.push_back(std::move(argv));
        }
        if (batch.empty() && protocol_err.empty()) break;
        out.clear();
        // Consecutive commands of the same class (writes / everything else)
        // run concurrently; classes run in order, so a read sees the writes
        // that precede it in the pipeline.
        size_t i = 0;
        while (i < batch.size() && !c.quit) {
          size_t j = i;
          const bool w = is_write(batch[i]);
          while (j < batch.size() && is_write(batch[j]) == w && upper(batch[j][0]) != "QUIT") {
            ++j;
          }
          if (j == i) j = i + 1;  // QUIT alone
          if (j == i + 1) {
            out += co_await execute(c, std::move(batch[i]));  // pipeline 1: no when_all
          } else if (!w || cfg().write_batch_bytes_max > 0) {
            std::vector<std::vector<std::string>> run;
            run.reserve(j - i);
            for (size_t k = i; k < j; ++k)
              run.push_back(std::move(batch[k]));
            out += co_await (w ? write_run(c, std::move(run)) : read_run(c, std::move(run)));
          } else {
            std::vector<Task<std::string>> tasks;
            for (size_t k = i; k < j; ++k)
              tasks.push_back(execute(c, std::move(batch[k])));
            for (auto& r : co_await runtime::when_all(std::move(tasks)))
              out += r;
          }
          i = j;
          // Large replies (MGET of big values) go out before the next run, so
          // one round never holds more than reply_bytes_max plus one run.
          if (out.size() > cfg().reply_bytes_max) {
            auto sent = co_await net::send_all(
                fd,
                std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(out.data()), out.size()));
            out.clear();
            if (!sent.ok()) {
              open = false;
              break;
            }
          }
        }
        if (!open) break;
        if (!protocol_err.empty()) {
          st.protocol_errors.fetch_add(1, std::memory_order_relaxed);
          out += protocol_err;
          open = false;
        }
        auto sent = co_await net::send_all(
            fd, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(out.data()), out.size()));
        if (!sent.ok()) open = false;
      }
    }
    ::close(fd);
    s.connections_.fetch_sub(1, std::memory_order_relaxed);
  }

  Task<void> accept_loop(int lfd) {
    auto& st = here();
    while (true) {
      auto fd = co_await io::accept(lfd, nullptr, nullptr);
      if (!fd.ok()) {
        if (fd.error().kind() == ErrorKind::kCancelled ||
            runtime::Reactor::here().runtime().stopping())
          break;
        (void)co_await runtime::sleep_for(std::chrono::milliseconds(10));  // EMFILE etc.: back off
        continue;
      }
      if (s.connections_.fetch_add(1, std::memory_order_relaxed) >= cfg().connections_max) {
        s.connections_.fetch_sub(1, std::memory_order_relaxed);
        st.conns_rejected.fetch_add(1, std::memory_order_relaxed);
        static constexpr std::string_view kFull = "-ERR max number of clients reached\r\n";
        (void)!::send(*fd, kFull.data(), kFull.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        ::close(*fd);
        continue;
      }
      int one = 1;
      ::setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      unsigned timeout = cfg().client_send_timeout_ms;
      ::setsockopt(*fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof timeout);
      runtime::spawn(connection(*fd));
    }
    ::close(lfd);
  }

  // ---- admin HTTP (/metrics) ------------------------------------------------------

  std::string kv_metrics() {
    std::string out;
    auto sum = [&](std::atomic<uint64_t> Server::CoreState::*m) {
      uint64_t t = 0;
      for (auto& c : s.cores_)
        t += ((*c).*m).load(std::memory_order_relaxed);
      return t;
    };
    auto counter = [&](const char* name, const char* help, uint64_t v) {
      out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
    };
    counter("kv_commands_total", "Commands executed", sum(&Server::CoreState::commands));
    counter("kv_forwarded_total", "Requests forwarded to a shard leader",
            sum(&Server::CoreState::forwarded));
    counter("kv_retries_total", "Write/read attempts retried", sum(&Server::CoreState::retries));
    counter("kv_write_batches_total", "Batch entries of pipelined writes answered",
            sum(&Server::CoreState::batches));
    counter("kv_batched_writes_total", "Writes answered from batch entries",
            sum(&Server::CoreState::batched_writes));
    counter("kv_errors_tryagain_total", "TRYAGAIN replies", sum(&Server::CoreState::err_tryagain));
    counter("kv_errors_clusterdown_total", "CLUSTERDOWN replies",
            sum(&Server::CoreState::err_clusterdown));
    counter("kv_errors_unknown_total", "UNKNOWN (outcome unknown) replies",
            sum(&Server::CoreState::err_unknown));
    counter("kv_connections_rejected_total", "Connections refused over the limit",
            sum(&Server::CoreState::conns_rejected));
    counter("kv_protocol_errors_total", "Connections closed for malformed RESP",
            sum(&Server::CoreState::protocol_errors));
    counter("kv_peer_lookups_total", "Rounds asking the other nodes for a client port",
            sum(&Server::CoreState::peer_lookups));
    counter("kv_peer_ports_learned_total", "Client ports learned from another node (NORI.WHOIS)",
            sum(&Server::CoreState::peer_ports_learned));
    counter("kv_peer_announce_missed_total",
            "Nodes that did not take a CLUSTER ADDNODE announcement (they ask later)",
            sum(&Server::CoreState::peer_announce_missed));
    out += fmt::format(
        "# HELP kv_connections Open client connections\n# TYPE kv_connections "
        "gauge\nkv_connections {}\n",
        s.connections_.load());
    return out;
  }

  Task<void> admin_conn(int fd) {
    char buf[4096];
    std::string req;
    while (req.find("\r\n\r\n") == std::string::npos && req.size() < sizeof buf) {
      auto n = co_await runtime::with_timeout(std::chrono::seconds(5),
                                              [](int fd, char* b) -> Task<base::Result<size_t>> {
                                                co_return co_await io::recv(fd, b, 4096);
                                              }(fd, buf));
      if (!n.ok() || *n == 0) break;
      req.append(buf, *n);
    }
    std::string body, status = "200 OK";
    if (req.starts_with("GET /metrics")) {
      body = node().metrics_text() + kv_metrics();
    } else {
      status = "404 Not Found";
      body = "try /metrics\n";
    }
    std::string resp = fmt::format(
        "HTTP/1.1 {}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: "
        "{}\r\nConnection: close\r\n\r\n{}",
        status, body.size(), body);
    (void)co_await net::send_all(
        fd, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(resp.data()), resp.size()));
    ::close(fd);
  }

  Task<void> admin_loop(int lfd) {
    while (true) {
      auto fd = co_await io::accept(lfd, nullptr, nullptr);
      if (!fd.ok()) {
        if (fd.error().kind() == ErrorKind::kCancelled ||
            runtime::Reactor::here().runtime().stopping())
          break;
        (void)co_await runtime::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      runtime::spawn(admin_conn(*fd));
    }
    ::close(lfd);
  }
};

namespace {

base::Result<int> reuseport_listener(const std::string& host, uint16_t port) {
  NORI_ASSIGN_OR_RETURN(net::SocketAddress addr, net::parse_address(host, port));
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return io::errno_error(errno, "socket");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (::bind(fd, addr.get(), addr.length) != 0 || ::listen(fd, 1024) != 0) {
    const int e = errno;
    ::close(fd);
    return io::errno_error(e, fmt::format("bind/listen {}:{}", host, port));
  }
  return fd;
}

}  // namespace

Server::Server(ServerConfig cfg) : cfg_(std::move(cfg)), auth_(cfg_.raft.cluster_secret) {}

Server::~Server() {
  close();
}

base::Result<std::unique_ptr<Server>> Server::open(ServerConfig cfg) {
  if (cfg.shards == 0 || cfg.shards > 65536) {
    return base::Error(ErrorKind::kInvalidArgument, "shards must be in 1..65536");
  }
  if (cfg.store.session_replies_max <= cfg.pipeline_max) {
    return base::Error(ErrorKind::kInvalidArgument,
                       "store.session_replies_max must exceed pipeline_max (store.h)");
  }
  cfg.raft.groups.clear();
  for (uint32_t sh = 0; sh < cfg.shards; ++sh)
    cfg.raft.groups.push_back(group_of_shard(sh));
  std::unique_ptr<Server> s(new Server(std::move(cfg)));
  NORI_TRY(s->start());
  return s;
}

base::Status Server::start() {
  const unsigned cores = cfg_.raft.cores;
  for (unsigned i = 0; i < cores; ++i)
    cores_.push_back(std::make_unique<CoreState>());
  // Listeners first: a port clash fails before the node touches its data dir.
  for (unsigned i = 0; i < cores; ++i) {
    NORI_ASSIGN_OR_RETURN(cores_[i]->listen_fd,
                          reuseport_listener(cfg_.client_host, cfg_.client_port));
  }
  if (cfg_.admin_port != 0) {
    NORI_ASSIGN_OR_RETURN(cores_[0]->admin_fd,
                          reuseport_listener(cfg_.admin_host, cfg_.admin_port));
  }
  // Nodes that joined after this process's --cluster was written.
  if (!cfg_.raft.data_dir.empty()) {
    NORI_ASSIGN_OR_RETURN(auto learned, load_peer_book(cfg_.raft.data_dir + "/kv-peers"));
    for (auto& [id, addr] : learned)
      cfg_.peer_clients.try_emplace(id, addr);
    cores_[0]->learned = std::move(learned);
  }
  for (auto& c : cores_) {
    for (auto& [id, addr] : cfg_.peer_clients) {
      if (id == cfg_.raft.node_id) continue;
      c->links.emplace(id, std::make_unique<ForwardLink>(addr.host, addr.port, cfg_.forward));
    }
  }
  raft::NodeCallbacks cb;
  // Each shard's Store is created on its group's core, before any entry is
  // applied (Node's contract), and only that core touches it afterwards.
  cb.group_hooks = [this](GroupId g) {
    auto& st = *cores_[runtime::Reactor::here().core()];
    auto& sh = st.shards[g];
    if (!sh) sh = std::make_unique<CoreState::Shard>(cfg_.store);
    CoreState::Shard* shard = sh.get();
    raft::GroupHooks h;
    h.applied = 0;  // in-memory state: replay every committed entry the WAL holds
    h.apply = [shard](raft::Index index, std::string_view data) {
      if (data.empty()) return;  // not ours (e.g. an empty entry): count it as applied
      shard->replies.clear();
      shard->store.apply(index, data, shard->replies);
      uint64_t client = 0, seq = 0;
      if (peek_session(data, client, seq)) {
        // A batch's waiter and a retry of its first write sent on its own
        // wait under the same key; the latter takes the first reply.
        auto [first, last] = shard->waiters.equal_range({client, seq});
        for (auto w = first; w != last; ++w) {
          if (w->second->filled) continue;
          w->second->filled = true;
          w->second->replies = shard->replies;
          if (w->second->applied != nullptr && !w->second->applied->resolved()) {
            w->second->applied->resolve(true);
          }
        }
      }
    };
    // Snapshots: a copy of the Store written off the reactor; a restore
    // replaces it (kv/snapshot.h). Writers waiting on entries the snapshot
    // covers find their reply through the session on retry.
    h.capture_snapshot = [shard]() -> base::Result<std::unique_ptr<raft::SnapshotView>> {
      return capture_snapshot(shard->store);
    };
    h.restore_snapshot = [shard](raft::snapshot::SnapshotSource& source) {
      auto st = restore_snapshot(shard->store, source);
      // Proposers waiting for an apply the snapshot covers look in the
      // restored sessions instead (propose_here).
      for (auto& [key, w] : shard->waiters) {
        if (w->applied != nullptr && !w->applied->resolved()) w->applied->resolve(false);
      }
      return st;
    };
    return h;
  };
  auto node = raft::Node::open(cfg_.raft, std::move(cb));
  if (!node.ok()) return std::move(node).error();
  node_ = std::move(node).value();
  impl_ = std::make_unique<ServerImpl>(ServerImpl{*this});
  ServerImpl* impl = impl_.get();
  for (unsigned i = 0; i < cores; ++i) {
    const int lfd = cores_[i]->listen_fd;
    node_->runtime().spawn_on(i, [impl, lfd] { return impl->accept_loop(lfd); });
  }
  if (cores_[0]->admin_fd >= 0) {
    const int afd = cores_[0]->admin_fd;
    node_->runtime().spawn_on(0, [impl, afd] { return impl->admin_loop(afd); });
  }
  return {};
}

void Server::close() {
  if (closed_) return;
  closed_ = true;
  if (node_) node_->close();
}

}  // namespace nori::kv
