// Snapshots across real processes: three nori-node processes (raft/node/tools)
// on loopback, each with its own data directory, driven over their JSON-lines
// protocol. A follower that was down while the others compacted their logs,
// and one whose data directory was wiped, come back by snapshot (issue 6's
// acceptance test).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/base/assert.h"
#include "tests/node/free_ports.h"

namespace nori::raft {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

class Procs {
 public:
  struct Proc {
    pid_t pid = -1;
    int in = -1, out = -1;
    std::string buf;
    std::deque<json> lines;
  };

  // n processes; the first `voters` bootstrap the cluster, the others start
  // with --join (they know every address, the voters only each other's).
  Procs(const std::string& name, int n, int voters = -1)
      : n_(n), voters_(voters < 0 ? n : voters), procs_(n) {
    root_ = std::filesystem::current_path().string() + "/node-test-data/" + name + "-" +
            std::to_string(::getpid());
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
    base_ = nori::testing::free_port_block(static_cast<unsigned>(n));
    for (int i = 1; i <= n; ++i) {
      std::string& list = i <= voters_ ? peers_ : all_peers_;
      if (!list.empty()) list += ",";
      list += std::to_string(i) + "@" + addr(i - 1);
    }
    all_peers_ = all_peers_.empty() ? peers_ : peers_ + "," + all_peers_;
  }
  std::string addr(int i) const { return "127.0.0.1:" + std::to_string(base_ + i); }
  ~Procs() {
    for (int i = 0; i < n_; ++i)
      stop(i);
    std::filesystem::remove_all(root_);
  }
  std::string dir(int i) const { return root_ + "/n" + std::to_string(i + 1); }

  void start(int i, std::vector<std::string> extra = {}, bool wait_ready = true) {
    Proc& p = procs_[i];
    NORI_ASSERT(p.pid < 0);
    int to_child[2], from_child[2];
    NORI_ASSERT(::pipe2(to_child, O_CLOEXEC) == 0 && ::pipe2(from_child, O_CLOEXEC) == 0);
    std::filesystem::create_directories(dir(i));
    const std::string log = root_ + "/n" + std::to_string(i + 1) + ".log";
    // Snapshots every 40 entries keeping 5; small queues so a follower that
    // was down cannot catch up from appends queued for it (~1 KiB entries).
    const bool joins = i >= voters_;
    std::vector<std::string> args = {NORI_NODE_BIN,
                                     "--id",
                                     std::to_string(i + 1),
                                     "--peers",
                                     joins ? all_peers_ : peers_,
                                     "--data",
                                     dir(i),
                                     "--groups",
                                     "1",
                                     "--heartbeat-ms",
                                     "50",
                                     "--election-min-ms",
                                     "150",
                                     "--election-max-ms",
                                     "300",
                                     "--lease-ms",
                                     "400",
                                     "--segment-mb",
                                     "4",
                                     "--record-applied",
                                     "--snapshot-entries",
                                     "40",
                                     "--snapshot-keep",
                                     "5",
                                     "--snapshot-chunk-bytes",
                                     "8192",
                                     "--snapshot-timeout-ms",
                                     "400",
                                     "--send-queue-bytes",
                                     "16384",
                                     "--append-bytes",
                                     "8192",
                                     "--inflight-msgs",
                                     "4"};
    if (joins) args.push_back("--join");
    args.insert(args.end(), extra.begin(), extra.end());
    pid_t pid = ::fork();
    NORI_ASSERT(pid >= 0);
    if (pid == 0) {
      ::dup2(to_child[0], 0);
      ::dup2(from_child[1], 1);
      int lf = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (lf >= 0) ::dup2(lf, 2);
      std::vector<char*> argv;
      for (auto& a : args)
        argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      _exit(127);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    p = Proc{};
    p.pid = pid;
    p.in = to_child[1];
    p.out = from_child[0];
    if (wait_ready) {
      NORI_ASSERT(wait_for(i, "ready", 20s).has_value(), "node {} did not start (see {})", i + 1,
                  log);
    }
  }
  // Waits for node i to exit by itself; its exit status (-1 if it did not).
  int wait_exit(int i, std::chrono::milliseconds within) {
    Proc& p = procs_[i];
    const auto end = std::chrono::steady_clock::now() + within;
    int status = 0;
    while (std::chrono::steady_clock::now() < end) {
      if (::waitpid(p.pid, &status, WNOHANG) == p.pid) {
        ::close(p.in);
        ::close(p.out);
        p.pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }
  void stop(int i) {
    Proc& p = procs_[i];
    if (p.pid < 0) return;
    send(i, {{"cmd", "quit"}});
    const auto end = std::chrono::steady_clock::now() + 10s;
    int status = 0;
    pid_t done = 0;
    while ((done = ::waitpid(p.pid, &status, WNOHANG)) == 0 &&
           std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(5ms);
    if (done == 0) {
      ::kill(p.pid, SIGKILL);
      ::waitpid(p.pid, nullptr, 0);
    }
    if (done != p.pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ADD_FAILURE() << "node " << i + 1 << " did not exit cleanly (status " << status << ")";
    }
    ::close(p.in);
    ::close(p.out);
    p.pid = -1;
  }
  bool up(int i) const { return procs_[i].pid >= 0; }

  void send(int i, const json& j) {
    const std::string s = j.dump() + "\n";
    NORI_ASSERT(::write(procs_[i].in, s.data(), s.size()) == static_cast<ssize_t>(s.size()));
  }
  std::optional<json> wait_for(int i, const std::string& type, std::chrono::milliseconds within) {
    Proc& p = procs_[i];
    const auto end = std::chrono::steady_clock::now() + within;
    while (true) {
      for (auto it = p.lines.begin(); it != p.lines.end(); ++it) {
        if (it->value("type", "") == type) {
          json j = std::move(*it);
          p.lines.erase(it);
          return j;
        }
      }
      const auto now = std::chrono::steady_clock::now();
      if (now >= end) return std::nullopt;
      pollfd pf{p.out, POLLIN, 0};
      if (::poll(&pf, 1, 100) <= 0) continue;
      char tmp[65536];
      ssize_t n = ::read(p.out, tmp, sizeof tmp);
      if (n <= 0) return std::nullopt;
      p.buf.append(tmp, static_cast<size_t>(n));
      size_t nl;
      while ((nl = p.buf.find('\n')) != std::string::npos) {
        json j = json::parse(p.buf.substr(0, nl), nullptr, false);
        p.buf.erase(0, nl + 1);
        if (!j.is_discarded()) p.lines.push_back(std::move(j));
      }
    }
  }
  json call(int i, const json& cmd, const std::string& type) {
    send(i, cmd);
    auto r = wait_for(i, type, 20s);
    NORI_ASSERT(r.has_value(), "node {} did not answer {}", i + 1, cmd.dump());
    return *r;
  }
  int wait_leader() {
    const auto end = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < end) {
      for (int i = 0; i < n_; ++i) {
        if (up(i) && call(i, {{"cmd", "status"}}, "status")["groups"]["1"]["role"] == 2) return i;
      }
      std::this_thread::sleep_for(20ms);
    }
    return -1;
  }
  void propose_many(int count, const std::string& tag) {
    for (int k = 0; k < count; ++k) {
      int l = wait_leader();
      ASSERT_GE(l, 0);
      json r = call(l,
                    {{"cmd", "propose"},
                     {"group", 1},
                     {"data", tag + std::to_string(k) + std::string(1000, 'x')}},
                    "propose");
      if (!r.value("ok", false)) {
        --k;
        std::this_thread::sleep_for(20ms);
      }
    }
  }
  std::vector<std::pair<uint64_t, std::string>> applied(int i) {
    json j = call(i, {{"cmd", "applied"}, {"group", 1}}, "applied");
    std::vector<std::pair<uint64_t, std::string>> out;
    for (auto& e : j["entries"])
      out.emplace_back(e[0].get<uint64_t>(), e[1].get<std::string>());
    return out;
  }
  uint64_t metric(int i, const std::string& name) {
    std::istringstream in(call(i, {{"cmd", "metrics"}}, "metrics")["text"].get<std::string>());
    std::string line;
    uint64_t sum = 0;
    while (std::getline(in, line)) {
      if (line.rfind(name + " ", 0) == 0) sum += std::stoull(line.substr(name.size() + 1));
    }
    return sum;
  }
  bool wait_same_applied(int i, int j, std::chrono::milliseconds within) {
    const auto end = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < end) {
      auto a = applied(i), b = applied(j);
      if (!a.empty() && a == b) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

 private:
  int n_;
  int voters_;
  uint16_t base_ = 0;
  std::string root_;
  std::string peers_;      // the bootstrap voters
  std::string all_peers_;  // everyone (a joining node's list)
  std::vector<Proc> procs_;
};

TEST(NodeSnapshotProcesses, FarBehindFollowerComesBackBySnapshotAndAWipedOneIsRefused) {
  Procs c("snap-procs", 3);
  for (int i = 0; i < 3; ++i)
    c.start(i);
  int l = c.wait_leader();
  ASSERT_GE(l, 0);
  const int f = l == 0 ? 1 : 0;
  const int t = 3 - f - l;
  // Far behind: down while 150 entries commit (snapshots every 40, 5 kept).
  c.stop(f);
  c.propose_many(150, "a");
  ASSERT_GE(c.metric(l, "raft_snapshots_taken_total"), 2u);
  c.start(f);
  ASSERT_TRUE(c.wait_same_applied(f, l, 30s));
  EXPECT_GE(c.metric(f, "raft_snapshots_installed_total"), 1u);

  // Wiped: its data directory deleted while down, restarted under its old id
  // (a new incarnation). Its peers pinned the incarnation it proved before
  // (raft/node/peer_pins.h) and refuse it: it forgot its votes and log, so
  // it must come back through membership change, never silently. The other
  // two go on committing.
  c.propose_many(50, "b");
  c.stop(f);
  std::filesystem::remove_all(c.dir(f));
  const uint64_t refused_before =
      c.metric(l, "net_refused_connections") + c.metric(t, "net_refused_connections");
  c.start(f);
  const auto end = std::chrono::steady_clock::now() + 30s;
  uint64_t refused = refused_before;
  while (refused == refused_before && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(100ms);
    refused = c.metric(l, "net_refused_connections") + c.metric(t, "net_refused_connections");
  }
  EXPECT_GT(refused, refused_before) << "the wiped node's new incarnation was accepted";
  c.propose_many(5, "c");
  EXPECT_EQ(c.metric(f, "raft_snapshots_installed_total"), 0u);
}

// A crash right after install step 2 (the reset record durable, the state
// machine not restored yet): the restarted node finds the WAL starting after
// the snapshot and the file that matches it, and restores from the file.
TEST(NodeSnapshotProcesses, CrashAfterTheResetRecordFinishesTheInstallOnRestart) {
  Procs c("snap-procs-crash", 3);
  for (int i = 0; i < 3; ++i)
    c.start(i);
  int l = c.wait_leader();
  ASSERT_GE(l, 0);
  const int f = l == 0 ? 1 : 0;
  c.stop(f);
  c.propose_many(150, "a");
  l = c.wait_leader();
  ASSERT_GE(l, 0);
  ASSERT_GE(c.metric(l, "raft_snapshots_taken_total"), 2u);
  c.start(f, {"--unsafe-exit-after-snapshot-reset"});
  ASSERT_EQ(c.wait_exit(f, 30s), 86) << "the install never reached its reset record";
  c.start(f);
  // Restored at open, before any entry: the recorded list is the snapshot's.
  EXPECT_EQ(c.metric(f, "raft_snapshots_installed_total"), 1u);
  ASSERT_TRUE(c.wait_same_applied(f, l, 30s));
  c.propose_many(5, "b");
  l = c.wait_leader();
  ASSERT_TRUE(c.wait_same_applied(f, l, 30s));
}

// Membership across processes: a fourth nori-node started with --join is
// added on the leader, learns the configuration and every address from the
// log, becomes a voter; a removed voter then no longer counts.
TEST(NodeSnapshotProcesses, JoinedProcessBecomesAVoterAndRemovedOneNoLongerCounts) {
  Procs c("member-procs", 4, 3);
  for (int i = 0; i < 4; ++i)
    c.start(i);
  int l = c.wait_leader();
  ASSERT_GE(l, 0);
  c.propose_many(20, "a");
  l = c.wait_leader();
  auto member_call = [&](const json& cmd, const std::string& type) {
    json r;
    for (int k = 0; k < 300; ++k) {  // kBusy while a change runs
      r = c.call(l, cmd, type);
      if (r.value("ok", false) || r.value("kind", "") != "busy") break;
      std::this_thread::sleep_for(20ms);
    }
    return r;
  };
  json r = member_call({{"cmd", "add_member"}, {"group", 1}, {"id", 4}, {"addr", c.addr(3)}},
                       "add_member");
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  ASSERT_TRUE(c.wait_same_applied(3, l, 30s));
  const int rm = l == 0 ? 1 : 0;
  const int other = 3 - rm - l;
  r = member_call({{"cmd", "remove_member"}, {"group", 1}, {"id", rm + 1}}, "remove_member");
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  r = member_call({{"cmd", "remove_member"}, {"group", 1}, {"id", rm + 1}}, "remove_member");
  ASSERT_EQ(r.value("kind", ""), "invalid argument") << r.dump();  // no longer a member
  c.stop(rm);
  c.stop(other);
  // Voters {l, other, 4}: l and 4 are a majority.
  bool committed = false;
  for (int k = 0; k < 100 && !committed; ++k) {
    const int ld = c.wait_leader();
    if (ld >= 0) {
      committed = c.call(ld, {{"cmd", "propose"}, {"group", 1}, {"data", "after"}}, "propose")
                      .value("ok", false);
    }
    if (!committed) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(committed);
  ASSERT_TRUE(c.wait_same_applied(3, l, 30s));
}

}  // namespace
}  // namespace nori::raft
