// Multi-process clusters for tests: nori-node processes (raft/node/tools) on
// loopback, each with its own data directory under the build tree, driven
// over their stdin/stdout JSON-lines protocol. Processes can be SIGKILLed
// and restarted on the same data directory.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/base/assert.h"
#include "tests/node/free_ports.h"

namespace nori::cluster_test {

using json = nlohmann::json;
using namespace std::chrono_literals;

// Node i's core c listens on base + 3 * (i - 1) + c (one core per node today).
inline uint16_t free_port_base() {
  return nori::testing::free_port_block(9);
}

class ProcessCluster {
 public:
  struct Proc {
    pid_t pid = -1;
    int in = -1, out = -1;
    std::string buf;
    std::deque<json> lines;
  };

  ProcessCluster(const std::string& name, int n) : n_(n) {
    root_ = std::filesystem::current_path().string() + "/cluster-test-data/" + name + "-" +
            std::to_string(::getpid());
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
    const uint16_t base = free_port_base();
    for (int i = 1; i <= n; ++i) {
      if (!peers_.empty()) peers_ += ",";
      peers_ += std::to_string(i) + "@127.0.0.1:" + std::to_string(base + 3 * (i - 1));
    }
    procs_.resize(n);
    for (int i = 0; i < n; ++i)
      start(i);
  }
  ~ProcessCluster() {
    for (int i = 0; i < n_; ++i)
      stop(i);
    std::filesystem::remove_all(root_);
  }

  void start(int i) {
    Proc& p = procs_[i];
    NORI_ASSERT(p.pid < 0);
    int to_child[2], from_child[2];
    NORI_ASSERT(::pipe2(to_child, O_CLOEXEC) == 0 && ::pipe2(from_child, O_CLOEXEC) == 0);
    const std::string dir = root_ + "/n" + std::to_string(i + 1);
    std::filesystem::create_directories(dir);
    const std::string id = std::to_string(i + 1);
    const std::string log = dir + "/node.log";
    std::vector<std::string> args = {NORI_NODE_BIN,
                                     "--id",
                                     id,
                                     "--peers",
                                     peers_,
                                     "--data",
                                     dir,
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
                                     "--record-applied"};
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
    auto ready = wait_for(i, "ready", 20s);
    NORI_ASSERT(ready.has_value(), "node {} did not start (see {})", i + 1, log);
  }

  void kill(int i) {
    Proc& p = procs_[i];
    if (p.pid < 0) return;
    ::kill(p.pid, SIGKILL);
    ::waitpid(p.pid, nullptr, 0);
    ::close(p.in);
    ::close(p.out);
    p.pid = -1;
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
    // A node asked to quit exits 0: anything else (a sanitizer report, an
    // assertion, a hang on close) is a failure of the run, with its log.
    if (done != p.pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ADD_FAILURE() << "node " << i + 1 << " did not exit cleanly on quit (status " << status
                    << "); its log:\n"
                    << log_tail(i);
    }
    ::close(p.in);
    ::close(p.out);
    p.pid = -1;
  }
  bool up(int i) const { return procs_[i].pid >= 0; }
  // The last 4 KiB of node i's stderr log.
  std::string log_tail(int i) const {
    std::ifstream f(root_ + "/n" + std::to_string(i + 1) + "/node.log");
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    return all.size() > 4096 ? all.substr(all.size() - 4096) : all;
  }
  int size() const { return n_; }

  void send(int i, const json& j) {
    const std::string s = j.dump() + "\n";
    NORI_ASSERT(::write(procs_[i].in, s.data(), s.size()) == static_cast<ssize_t>(s.size()));
  }
  std::optional<json> wait_for(int i, const std::string& type,
                               std::chrono::milliseconds within = 15s) {
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
      const int ms = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(end - now).count());
      if (::poll(&pf, 1, std::min(ms, 100)) <= 0) continue;
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

  json status(int i) { return call(i, {{"cmd", "status"}}, "status")["groups"]["1"]; }
  json propose(int i, const std::string& data) {
    return call(i, {{"cmd", "propose"}, {"group", 1}, {"data", data}}, "propose");
  }
  json read(int i, const std::string& mode) {
    return call(i, {{"cmd", "read"}, {"group", 1}, {"mode", mode}}, "read");
  }
  std::vector<std::pair<uint64_t, std::string>> applied(int i) {
    json j = call(i, {{"cmd", "applied"}, {"group", 1}}, "applied");
    std::vector<std::pair<uint64_t, std::string>> out;
    for (auto& e : j["entries"])
      out.emplace_back(e[0].get<uint64_t>(), e[1].get<std::string>());
    return out;
  }

  // The live node that leads group 1, or -1 after the deadline.
  int wait_leader(std::chrono::milliseconds within = 10s) {
    const auto end = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < end) {
      for (int i = 0; i < n_; ++i) {
        if (up(i) && status(i)["role"].get<int>() == 2) return i;
      }
      std::this_thread::sleep_for(20ms);
    }
    return -1;
  }

 private:
  int n_;
  std::string root_;
  std::string peers_;
  std::vector<Proc> procs_;
};

}  // namespace nori::cluster_test
