#include "raft/node/node.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "raft/node/core_host.h"
#include "raft/node/node_control.h"
#include "runtime/runtime.h"
#include "wal/posix_dir.h"

namespace nori::raft {

using base::BootClock;
using base::ErrorKind;
using runtime::Task;

namespace {

constexpr const char* kMetaName = "node.meta";
constexpr const char* kMetaMagic = "nori-node-meta 1";

uint64_t random_u64() {
  uint64_t v = 0;
  while (v == 0) {
    if (::getrandom(&v, sizeof v, 0) != sizeof v) NORI_PANIC("getrandom failed: {}", errno);
  }
  return v;
}

}  // namespace

Node::Node(RaftConfig cfg, NodeCallbacks callbacks)
    : cfg_(std::move(cfg)), callbacks_(std::move(callbacks)) {}

Node::~Node() {
  close();
}

base::Result<std::unique_ptr<Node>> Node::open(RaftConfig cfg, NodeCallbacks callbacks) {
  NORI_TRY(cfg.validate());
  for (GroupId g : cfg.groups) {
    if (g == kNodeControlGroup) {
      return base::err(ErrorKind::kInvalidArgument, "group id {} is reserved (node control)", g);
    }
  }
  std::unique_ptr<Node> node(new Node(std::move(cfg), std::move(callbacks)));
  NORI_TRY(node->prepare_data_dir());
  if (auto st = node->start(); !st.ok()) {
    node->close();
    return st.error();
  }
  return node;
}

// node.meta records who this data directory belongs to. A directory without
// it is a new node: it gets a fresh incarnation id, which its peers see in
// every handshake (net/accept_policy.h), so a node whose disk was wiped never
// passes for the node it was.
base::Status Node::prepare_data_dir() {
  std::error_code ec;
  std::filesystem::create_directories(cfg_.data_dir, ec);
  if (ec) return base::err(ErrorKind::kIo, "create {}: {}", cfg_.data_dir, ec.message());
  const std::string meta = cfg_.data_dir + "/" + kMetaName;
  std::ifstream in(meta);
  if (in) {
    std::string magic;
    std::getline(in, magic);
    std::map<std::string, uint64_t> kv;
    std::string key;
    uint64_t value = 0;
    while (in >> key >> value)
      kv[key] = value;
    if (magic != kMetaMagic || !kv.contains("node_id") || !kv.contains("incarnation")) {
      return base::err(ErrorKind::kCorruption, "{} is not a valid node.meta", meta);
    }
    if (kv["node_id"] != cfg_.node_id) {
      return base::err(ErrorKind::kInvalidArgument,
                       "data_dir {} belongs to node {}, not to node {}", cfg_.data_dir,
                       kv["node_id"], cfg_.node_id);
    }
    if (kv["cluster_id"] != cfg_.cluster_id) {
      return base::err(ErrorKind::kInvalidArgument, "data_dir {} belongs to cluster {}, not {}",
                       cfg_.data_dir, kv["cluster_id"], cfg_.cluster_id);
    }
    if (kv["cores"] != cfg_.cores) {
      return base::err(ErrorKind::kInvalidArgument,
                       "data_dir {} was created with {} cores; this config has {} (groups are "
                       "placed by core count)",
                       cfg_.data_dir, kv["cores"], cfg_.cores);
    }
    // Absent in directories created before joining existed: bootstrapped.
    const bool joined = kv.contains("join") && kv["join"] != 0;
    if (joined != cfg_.join) {
      return base::err(ErrorKind::kInvalidArgument,
                       "data_dir {} was created {} but this config has join = {}: a node keeps "
                       "the way it entered the cluster (docs/node.md, \"Membership\")",
                       cfg_.data_dir, joined ? "joining (join = true)" : "bootstrapping",
                       cfg_.join);
    }
    incarnation_ = kv["incarnation"];
    return {};
  }
  for (const auto& ent : std::filesystem::directory_iterator(cfg_.data_dir, ec)) {
    if (ent.path().filename().string().rfind("core-", 0) == 0) {
      return base::err(ErrorKind::kCorruption,
                       "{} holds WAL directories but no node.meta: refusing to start as a new "
                       "node over an old log",
                       cfg_.data_dir);
    }
  }
  if (!cfg_.bootstrap && !cfg_.join) {
    return base::err(ErrorKind::kInvalidArgument,
                     "data_dir {} is empty and bootstrap = false: a node whose disk was wiped "
                     "rejoins only through membership change (join = true, then add_member on "
                     "the leader)",
                     cfg_.data_dir);
  }
  incarnation_ = random_u64();
  // `join` is recorded: the node keeps the way it entered the cluster.
  return wal::write_file_durably(
      cfg_.data_dir, kMetaName,
      fmt::format("{}\nnode_id {}\ncluster_id {}\ncores {}\nincarnation {}\njoin {}\n", kMetaMagic,
                  cfg_.node_id, cfg_.cluster_id, cfg_.cores, incarnation_, cfg_.join ? 1 : 0));
}

base::Status Node::start() {
  if (!cfg_.events_jsonl_path.empty()) {
    NORI_ASSIGN_OR_RETURN(events_log_, EventLog::open(cfg_.events_jsonl_path));
  }
  runtime::RuntimeConfig rc;
  rc.cores = cfg_.cores;
  rc.pin = cfg_.reactor_pin;
  rt_ = std::make_unique<runtime::Runtime>(rc);
  for (unsigned c = 0; c < cfg_.cores; ++c)
    hosts_.push_back(std::make_unique<CoreHost>(*this, cfg_, c, incarnation_));
  // Groups this node removed are not created again from cfg_.groups (a
  // retired shard still listed there would come back empty, with a
  // forgotten vote): only create_group brings an id back. Groups the WAL
  // holds are recovered whatever the list says.
  std::vector<GroupId> groups;
  for (unsigned c = 0; c < cfg_.cores; ++c) {
    auto removed =
        std::make_unique<RemovedGroups>(cfg_.data_dir, fmt::format("removed-groups-core-{}", c));
    NORI_TRY(removed->load());
    for (GroupId g : cfg_.groups) {
      if (placement(g, cfg_.cores) != c) continue;
      if (removed->contains(g)) {
        fmt::print(stderr,
                   "nori: group {} was removed from this node: not created again from the "
                   "configured groups (create_group brings it back)\n",
                   g);
        continue;
      }
      groups.push_back(g);
    }
    hosts_[c]->set_removed_groups(std::move(removed));
  }
  for (unsigned c = 0; c < cfg_.cores; ++c) {
    CoreHost* h = hosts_[c].get();
    base::Status st = rt_->block_on(
        c, [h, groups]() -> Task<base::Status> { co_return co_await h->start(groups); });
    NORI_TRY(st);
  }
  if (!cfg_.metrics_listen.empty()) start_metrics_http();
  return {};
}

void Node::close() {
  if (closed_) return;
  closed_ = true;
  stop_metrics_http();
  if (rt_) {
    for (unsigned c = 0; c < hosts_.size(); ++c) {
      CoreHost* h = hosts_[c].get();
      rt_->block_on(c, [h]() -> Task<void> { co_await h->close(); });
    }
    rt_->stop();
  }
  hosts_.clear();
  rt_.reset();
  // After the runtime: no core publishes any more; the queued lines are
  // written and the file closed.
  if (events_log_) events_log_->stop();
}

// ---- forwarding ------------------------------------------------------------------

Task<base::Result<Index>> Node::propose(GroupId g, std::string data) {
  const TimePoint called = BootClock::now();
  CoreHost* h = hosts_[core_of(g)].get();
  co_return co_await runtime::submit_to(core_of(g),
                                        [h, g, called, data = std::move(data)]() mutable {
                                          return h->propose(g, std::move(data), called);
                                        });
}

Task<base::Status> Node::read(GroupId g, ReadMode mode) {
  const TimePoint called = BootClock::now();
  CoreHost* h = hosts_[core_of(g)].get();
  co_return co_await runtime::submit_to(core_of(g),
                                        [h, g, mode, called] { return h->read(g, mode, called); });
}

Task<base::Status> Node::transfer_leader(GroupId g, NodeId target) {
  CoreHost* h = hosts_[core_of(g)].get();
  co_return co_await runtime::submit_to(core_of(g),
                                        [h, g, target] { return h->transfer_leader(g, target); });
}

Task<base::Status> Node::create_group(GroupId g) {
  CoreHost* h = hosts_[core_of(g)].get();
  co_return co_await runtime::submit_to(core_of(g), [h, g] { return h->create_group(g); });
}

Task<base::Status> Node::remove_group(GroupId g, bool force) {
  CoreHost* h = hosts_[core_of(g)].get();
  co_return co_await runtime::submit_to(core_of(g),
                                        [h, g, force] { return h->remove_group(g, force); });
}

Task<Node::NodeChangeReport> Node::add_node(NodeId id, std::string addr, MemberWait wait) {
  co_return co_await change_node(true, id, std::move(addr), wait);
}

Task<Node::NodeChangeReport> Node::remove_node(NodeId id, MemberWait wait) {
  co_return co_await change_node(false, id, std::string(), wait);
}

Task<Node::NodeChangeReport> Node::change_node(bool adding, NodeId id, std::string addr,
                                               MemberWait wait) {
  const TimePoint deadline =
      BootClock::now() + std::chrono::milliseconds(cfg_.member_change_timeout_ms);
  NodeChangeReport out;
  // Core after core: each core runs its own groups concurrently, and a
  // core's groups talk to the same core of the other nodes.
  for (unsigned c = 0; c < hosts_.size(); ++c) {
    CoreHost* h = hosts_[c].get();
    auto part = co_await runtime::submit_to(c, [h, adding, id, addr, wait, deadline] {
      return h->change_member_all(adding, id, addr, wait, deadline);
    });
    for (auto& [g, st] : part)
      out.emplace(g, std::move(st));
  }
  co_return out;
}

Task<base::Status> Node::subscribe_applied(GroupId g, ApplyFn fn, bool manual_ack) {
  CoreHost* h = hosts_[core_of(g)].get();
  co_return co_await runtime::submit_to(core_of(g),
                                        [h, g, fn = std::move(fn), manual_ack]() mutable {
                                          return h->subscribe_applied(g, std::move(fn), manual_ack);
                                        });
}

Task<base::Status> Node::ack_applied(GroupId g, Index index) {
  CoreHost* h = hosts_[core_of(g)].get();
  co_return co_await runtime::submit_to(core_of(g),
                                        [h, g, index] { return h->ack_applied(g, index); });
}

Task<base::Status> Node::install_snapshot(GroupId g, std::istream& snapshot) {
  CoreHost* h = hosts_[core_of(g)].get();
  std::istream* in = &snapshot;
  co_return co_await runtime::submit_to(core_of(g),
                                        [h, g, in]() { return h->install_snapshot(g, *in); });
}
Task<base::Status> Node::trigger_snapshot(GroupId g) {
  CoreHost* h = hosts_[core_of(g)].get();
  co_return co_await runtime::submit_to(core_of(g), [h, g] { return h->trigger_snapshot(g); });
}
Task<base::Status> Node::add_member(GroupId g, NodeId id, std::string addr, MemberWait wait) {
  CoreHost* h = hosts_[core_of(g)].get();
  co_return co_await runtime::submit_to(
      core_of(g), [h, g, id, wait, addr = std::move(addr)]() mutable {
        return h->change_member(g, true, id, std::move(addr), wait);
      });
}
Task<base::Status> Node::remove_member(GroupId g, NodeId id, MemberWait wait) {
  CoreHost* h = hosts_[core_of(g)].get();
  co_return co_await runtime::submit_to(
      core_of(g), [h, g, id, wait] { return h->change_member(g, false, id, std::string(), wait); });
}
Task<base::Status> Node::abandon_member_change(GroupId g) {
  CoreHost* h = hosts_[core_of(g)].get();
  co_return co_await runtime::submit_to(core_of(g), [h, g] { return h->abandon_member_change(g); });
}
Task<base::Result<Membership>> Node::membership(GroupId g) {
  CoreHost* h = hosts_[core_of(g)].get();
  co_return co_await runtime::submit_to(core_of(g), [h, g] { return h->membership(g); });
}

// ---- any thread ------------------------------------------------------------------

GroupStatusCell* Node::status_cell(GroupId g) const {
  std::shared_lock lk(groups_mu_);
  auto it = cells_.find(g);
  return it == cells_.end() ? nullptr : it->second.get();
}

void Node::register_group(GroupId g, std::shared_ptr<GroupStatusCell> cell) {
  std::unique_lock lk(groups_mu_);
  cells_[g] = std::move(cell);
}

void Node::unregister_group(GroupId g) {
  std::unique_lock lk(groups_mu_);
  cells_.erase(g);
}

bool Node::is_leader(GroupId g) const {
  GroupStatusCell* c = status_cell(g);
  return c != nullptr && c->role.load(std::memory_order_acquire) == 2;
}

NodeId Node::leader(GroupId g) const {
  GroupStatusCell* c = status_cell(g);
  return c == nullptr ? kNoNode : c->leader.load(std::memory_order_relaxed);
}

bool Node::has_group(GroupId g) const {
  return status_cell(g) != nullptr;
}

std::vector<GroupId> Node::groups() const {
  std::shared_lock lk(groups_mu_);
  std::vector<GroupId> out;
  for (const auto& [g, c] : cells_)
    out.push_back(g);
  return out;
}

std::string Node::metrics_text() const {
  std::vector<const runtime::metrics::Registry*> regs;
  for (const auto& h : hosts_)
    regs.push_back(&h->registry());
  return runtime::metrics::render_prometheus(regs);
}

NodeMetricsSnapshot Node::metrics_snapshot() {
  NodeMetricsSnapshot out;
  for (unsigned c = 0; c < hosts_.size(); ++c) {
    CoreHost* h = hosts_[c].get();
    rt_->block_on(c, [h, &out] { h->collect(out); });
  }
  return out;
}

void Node::publish_event(const NodeEvent& e) {
  if (callbacks_.on_event) callbacks_.on_event(e);
  // Queued for the writer thread (event_log.h): a reactor never waits for
  // the file; a full queue drops the line and the file says so.
  if (events_log_) events_log_->append(to_json(e));
}

// ---- /metrics over HTTP ------------------------------------------------------------
// A plain thread with blocking sockets, outside the reactors: scrapes are rare
// and must never delay a round. It reads the per-core registries, which any
// thread may do.

void Node::start_metrics_http() {
  const auto colon = cfg_.metrics_listen.rfind(':');
  const std::string host = cfg_.metrics_listen.substr(0, colon);
  const std::string port = cfg_.metrics_listen.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
    fmt::print(stderr, "nori: metrics_listen {}: bad address\n", cfg_.metrics_listen);
    return;
  }
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || ::bind(fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(fd, 16) != 0) {
    fmt::print(stderr, "nori: metrics_listen {}: {}\n", cfg_.metrics_listen, std::strerror(errno));
    if (fd >= 0) ::close(fd);
    ::freeaddrinfo(res);
    return;
  }
  ::freeaddrinfo(res);
  metrics_fd_ = fd;
  metrics_thread_ = std::thread([this] {
    while (!metrics_stop_.load()) {
      pollfd p{metrics_fd_, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      int c = ::accept4(metrics_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      timeval tv{1, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      char buf[2048];
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      std::string req(buf, n > 0 ? static_cast<size_t>(n) : 0);
      std::string body, status = "200 OK";
      if (req.rfind("GET /metrics", 0) == 0) {
        body = metrics_text();
      } else {
        status = "404 Not Found";
        body = "try /metrics\n";
      }
      std::string resp = fmt::format(
          "HTTP/1.1 {}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: "
          "{}\r\nConnection: close\r\n\r\n{}",
          status, body.size(), body);
      size_t off = 0;
      while (off < resp.size()) {
        ssize_t w = ::send(c, resp.data() + off, resp.size() - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += static_cast<size_t>(w);
      }
      ::close(c);
    }
  });
}

void Node::stop_metrics_http() {
  metrics_stop_.store(true);
  if (metrics_thread_.joinable()) metrics_thread_.join();
  if (metrics_fd_ >= 0) ::close(metrics_fd_);
  metrics_fd_ = -1;
}

}  // namespace nori::raft
