// nori-bench: starts a real cluster (node processes on loopback, each with its
// own data directory and WAL, real TCP), drives it with clients inside the
// node processes, and reports throughput, latency percentiles, the stage
// breakdown, syncs, CPU and memory per node, against the floor measured in the
// same run. docs/bench.md describes the options, the phases and the JSON.
//
//   nori-bench                       # the default run (about a minute)
//   nori-bench --inflight 1,64,512 --duration 10 --groups 2
//   nori-bench --rate 20000          # open loop at 20,000 proposals/s
//   nori-bench node --id 1 ...       # a node process (used by nori-bench itself)
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/nori-bench/floor.h"
#include "raft/node/config.h"
#include "raft/node/tools/hist_util.h"
#include "raft/node/tools/node_process.h"
#include "runtime/base/clock.h"
#include "runtime/runtime.h"

namespace nori::bench {
namespace {

using raft::tools::diff;
using raft::tools::HistogramSnapshot;
using raft::tools::merge_json;

using json = nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

double ms(uint64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

// ---- node processes -------------------------------------------------------------

struct Child {
  int id = 0;
  pid_t pid = -1;
  int in = -1;   // we write commands
  int out = -1;  // we read JSON lines
  std::string buf;
  std::deque<json> lines;
  bool alive = true;
};

class Cluster {
 public:
  std::vector<Child> kids;
  // Per phase and second: summed commits/reads and merged latencies.
  struct Second {
    int reports = 0;
    double dt = 0;
    uint64_t commits = 0, reads = 0;
    HistogramSnapshot lat, read_lat;
  };
  std::map<std::string, std::map<int64_t, Second>> timeline;
  std::vector<std::string> phase_order;
  bool quiet = false;

  void spawn(const std::string& exe, const std::vector<std::string>& args, const std::string& log,
             int id) {
    int to_child[2], from_child[2];
    NORI_ASSERT(::pipe2(to_child, O_CLOEXEC) == 0 && ::pipe2(from_child, O_CLOEXEC) == 0);
    pid_t pid = ::fork();
    NORI_ASSERT(pid >= 0, "fork");
    if (pid == 0) {
      ::dup2(to_child[0], 0);
      ::dup2(from_child[1], 1);
      int lf = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (lf >= 0) ::dup2(lf, 2);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(exe.c_str()));
      for (const auto& a : args)
        argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(exe.c_str(), argv.data());
      _exit(127);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    Child c;
    c.id = id;
    c.pid = pid;
    c.in = to_child[1];
    c.out = from_child[0];
    kids.push_back(std::move(c));
  }

  void send(Child& c, const json& j) {
    if (!c.alive) return;
    const std::string s = j.dump() + "\n";
    if (::write(c.in, s.data(), s.size()) != static_cast<ssize_t>(s.size())) c.alive = false;
  }
  void send_all(const json& j) {
    for (auto& c : kids)
      send(c, j);
  }

  // Reads whatever the children wrote within timeout; progress lines go to
  // the timeline, the rest to each child's queue.
  void pump(std::chrono::milliseconds timeout) {
    std::vector<pollfd> fds;
    std::vector<Child*> who;
    for (auto& c : kids) {
      if (!c.alive) continue;
      fds.push_back({c.out, POLLIN, 0});
      who.push_back(&c);
    }
    if (fds.empty()) {
      std::this_thread::sleep_for(timeout);
      return;
    }
    if (::poll(fds.data(), fds.size(), static_cast<int>(timeout.count())) <= 0) return;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Child& c = *who[i];
      char tmp[65536];
      ssize_t n = ::read(c.out, tmp, sizeof tmp);
      if (n <= 0) {
        c.alive = false;
        continue;
      }
      c.buf.append(tmp, static_cast<size_t>(n));
      size_t nl;
      while ((nl = c.buf.find('\n')) != std::string::npos) {
        json j = json::parse(c.buf.substr(0, nl), nullptr, false);
        c.buf.erase(0, nl + 1);
        if (j.is_discarded()) continue;
        if (j.value("type", "") == "progress") {
          on_progress(j);
        } else {
          c.lines.push_back(std::move(j));
        }
      }
    }
  }

  // The next line of `type` from child c (others stay queued), or nullopt.
  std::optional<json> wait_for(Child& c, const std::string& type,
                               std::chrono::milliseconds within = 30s) {
    const auto end = Clock::now() + within;
    while (true) {
      for (auto it = c.lines.begin(); it != c.lines.end(); ++it) {
        if (it->value("type", "") == type) {
          json j = std::move(*it);
          c.lines.erase(it);
          return j;
        }
        if (it->value("type", "") == "fatal") {
          std::cerr << "node " << c.id << ": " << it->value("message", "") << "\n";
          c.alive = false;
          return std::nullopt;
        }
      }
      if (!c.alive || Clock::now() >= end) return std::nullopt;
      pump(50ms);
    }
  }

  void on_progress(const json& j) {
    const std::string phase = j.value("phase", "");
    const int64_t sec = (j.value("t_ms", int64_t{0}) + 500) / 1000;
    Second& s = timeline[phase][sec];
    s.reports++;
    s.dt = std::max(s.dt, j.value("dt", 1.0));
    s.commits += j.value("commits", uint64_t{0});
    s.reads += j.value("reads", uint64_t{0});
    merge_json(j["lat"], s.lat);
    merge_json(j["read_lat"], s.read_lat);
    int alive = 0;
    for (auto& c : kids)
      alive += c.alive ? 1 : 0;
    if (s.reports == alive && !quiet) {
      const double dt = s.dt > 0 ? s.dt : 1.0;
      std::string line =
          fmt::format("  [{:<14}] t={:>3}s  {:>9.0f} commits/s", phase, sec, s.commits / dt);
      if (s.lat.count() > 0) {
        line += fmt::format("  p50 {:.3f} ms  p99 {:.3f} ms", ms(s.lat.percentile(0.5)),
                            ms(s.lat.percentile(0.99)));
      }
      if (s.reads > 0) {
        line += fmt::format("  {:>9.0f} reads/s  p50 {:.3f} ms p99 {:.3f} ms", s.reads / dt,
                            ms(s.read_lat.percentile(0.5)), ms(s.read_lat.percentile(0.99)));
      }
      std::cout << line << "\n" << std::flush;
    }
  }

  void kill(Child& c) {
    ::kill(c.pid, SIGKILL);
    ::waitpid(c.pid, nullptr, 0);
    c.alive = false;
    ::close(c.in);
    ::close(c.out);
  }

  void quit_all() {
    for (auto& c : kids) {
      if (!c.alive) continue;
      send(c, {{"cmd", "quit"}});
    }
    for (auto& c : kids) {
      if (c.pid <= 0) continue;
      if (c.alive) {
        const auto end = Clock::now() + 10s;
        int st = 0;
        while (::waitpid(c.pid, &st, WNOHANG) == 0 && Clock::now() < end)
          std::this_thread::sleep_for(10ms);
        if (Clock::now() >= end) {
          ::kill(c.pid, SIGKILL);
          ::waitpid(c.pid, nullptr, 0);
        }
        ::close(c.in);
        ::close(c.out);
        c.alive = false;
      }
      c.pid = -1;
    }
  }
};

// ---- phases -----------------------------------------------------------------------

struct PhaseSpec {
  std::string name;
  std::string mode = "closed";
  uint32_t inflight = 1;  // per group
  double rate = 0;        // per group (open loop)
  uint32_t duration_ms = 5000;
  std::string reads = "none";
  uint32_t read_inflight = 0;
  bool report = true;
};

struct NodeFigures {
  int node = 0;
  double cpu_cores = 0;  // CPU seconds per second
  long rss_kb = 0;
  uint64_t wal_writes = 0, wal_entries = 0;
  // Context switches of every thread of the node process (reactors and the
  // kernel's io-wq workers, which are threads of the process) during the
  // phase: each is a sleep and a wake-up, the cost that decides latency at
  // one proposal in flight on a shared CPU. Threads that exited during the
  // phase (idle io-wq workers) are not counted.
  uint64_t ctx_switches = 0;
};

// Sum of voluntary + involuntary context switches over /proc/<pid>/task/*.
uint64_t process_ctx_switches(pid_t pid) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& t : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    std::ifstream f(t.path() / "status");
    std::string line;
    while (std::getline(f, line)) {
      if (line.starts_with("voluntary_ctxt_switches:") ||
          line.starts_with("nonvoluntary_ctxt_switches:")) {
        total += std::strtoull(line.c_str() + line.find(':') + 1, nullptr, 10);
      }
    }
  }
  return total;
}

struct PhaseResult {
  PhaseSpec spec;
  double elapsed_s = 0;
  uint64_t commits = 0, reads = 0, errors = 0;
  HistogramSnapshot lat, read_lat, queued, leader_wal, quorum, applied;
  uint64_t wal_writes = 0, wal_entries = 0, net_bytes = 0, elections = 0;
  std::vector<NodeFigures> nodes;
};

std::optional<PhaseResult> run_phase(Cluster& cl, const PhaseSpec& p, uint32_t payload,
                                     unsigned groups) {
  cl.phase_order.push_back(p.name);
  std::cout << fmt::format("phase {}: {} loop, {} in flight/group{}{}, {:.0f} s\n", p.name, p.mode,
                           p.inflight, p.rate > 0 ? fmt::format(", {:.0f}/s/group", p.rate) : "",
                           p.reads != "none" ? ", reads: " + p.reads : "", p.duration_ms / 1000.0);
  cl.send_all({{"cmd", "load"},
               {"phase", p.name},
               {"mode", p.mode},
               {"inflight", p.inflight},
               {"rate", p.rate},
               {"payload", payload},
               {"duration_ms", p.duration_ms},
               {"reads", p.reads},
               {"read_inflight", p.read_inflight}});
  PhaseResult r;
  r.spec = p;
  std::vector<uint64_t> switches0;
  for (auto& c : cl.kids)
    switches0.push_back(c.alive ? process_ctx_switches(c.pid) : 0);
  size_t kid = 0;
  for (auto& c : cl.kids) {
    const size_t k = kid++;
    if (!c.alive) continue;
    auto j = cl.wait_for(c, "phase_done", std::chrono::milliseconds(p.duration_ms) + 30s);
    if (!j) {
      std::cerr << "node " << c.id << " did not finish phase " << p.name << "\n";
      return std::nullopt;
    }
    r.elapsed_s = std::max(r.elapsed_s, (*j)["elapsed_s"].get<double>());
    r.commits += (*j)["commits"].get<uint64_t>();
    r.reads += (*j)["reads"].get<uint64_t>();
    r.errors += (*j)["errors"].get<uint64_t>();
    merge_json((*j)["lat"], r.lat);
    merge_json((*j)["read_lat"], r.read_lat);
    merge_json((*j)["stage_queued"], r.queued);
    merge_json((*j)["stage_leader_wal"], r.leader_wal);
    merge_json((*j)["stage_quorum"], r.quorum);
    merge_json((*j)["stage_applied"], r.applied);
    r.wal_writes += (*j)["wal_writes"].get<uint64_t>();
    r.wal_entries += (*j)["wal_entries"].get<uint64_t>();
    r.net_bytes += (*j)["net_bytes"].get<uint64_t>();
    r.elections += (*j)["elections"].get<uint64_t>();
    NodeFigures nf;
    nf.node = c.id;
    nf.cpu_cores = (*j)["cpu_s"].get<double>() / std::max(1e-9, (*j)["elapsed_s"].get<double>());
    nf.rss_kb = (*j)["rss_kb"].get<long>();
    nf.wal_writes = (*j)["wal_writes"].get<uint64_t>();
    nf.wal_entries = (*j)["wal_entries"].get<uint64_t>();
    const uint64_t switches1 = process_ctx_switches(c.pid);
    nf.ctx_switches = switches1 > switches0[k] ? switches1 - switches0[k] : 0;
    r.nodes.push_back(nf);
  }
  (void)groups;
  return r;
}

json pct_json(const HistogramSnapshot& h) {
  return {{"count", h.count()},
          {"p50_ms", ms(h.percentile(0.5))},
          {"p90_ms", ms(h.percentile(0.9))},
          {"p99_ms", ms(h.percentile(0.99))},
          {"p999_ms", ms(h.percentile(0.999))},
          {"max_ms", ms(h.max())}};
}

// ---- SVG chart ------------------------------------------------------------------

std::string svg_chart(const Cluster& cl) {
  struct Pt {
    double t, rate, p50, p99, p999;
    std::string phase;
  };
  std::vector<Pt> pts;
  double t = 0;
  for (const std::string& ph : cl.phase_order) {
    auto it = cl.timeline.find(ph);
    if (it == cl.timeline.end()) continue;
    for (const auto& [sec, s] : it->second) {
      const double dt = s.dt > 0 ? s.dt : 1.0;
      const bool reads = s.reads > 0 && s.commits == 0;
      const HistogramSnapshot& h = reads ? s.read_lat : s.lat;
      pts.push_back({t, (reads ? s.reads : s.commits) / dt, ms(h.percentile(0.5)),
                     ms(h.percentile(0.99)), ms(h.percentile(0.999)), ph});
      t += dt;
    }
  }
  const double W = 960, H = 520, L = 70, R = 70, T = 30, B = 60;
  double tmax = 1, rmax = 1, lmax = 0.001;
  for (auto& p : pts) {
    tmax = std::max(tmax, p.t + 1);
    rmax = std::max(rmax, p.rate);
    lmax = std::max(lmax, p.p99);
  }
  // Log scale for latency (0.01 ms .. lmax).
  const double lmin = 0.01;
  auto x = [&](double v) { return L + (W - L - R) * v / tmax; };
  auto yr = [&](double v) { return H - B - (H - T - B) * v / (rmax * 1.1); };
  auto yl = [&](double v) {
    v = std::max(v, lmin);
    return H - B - (H - T - B) * std::log10(v / lmin) / std::log10(lmax * 2 / lmin);
  };
  std::string s = fmt::format(
      R"~(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="12">)~"
      "\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      W, H);
  s += fmt::format(
      R"~(<text x="{}" y="18" font-size="14">nori-bench: throughput (ops/s, left) and latency percentiles (ms, log, right) over the run</text>)~"
      "\n",
      L);
  s += fmt::format(
      R"~(<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="black"/><line x1="{0}" y1="{3}" x2="{0}" y2="{1}" stroke="black"/><line x1="{2}" y1="{3}" x2="{2}" y2="{1}" stroke="black"/>)~"
      "\n",
      L, H - B, W - R, T);
  for (int k = 0; k <= 4; ++k) {
    const double v = rmax * 1.1 * k / 4;
    s += fmt::format(R"~(<text x="{}" y="{}" text-anchor="end">{:.0f}</text>)~"
                     "\n",
                     L - 4, yr(v) + 4, v);
  }
  for (double v = lmin; v < lmax * 2; v *= 10) {
    s += fmt::format(
        R"~(<text x="{}" y="{}">{}</text><line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#eee"/>)~"
        "\n",
        W - R + 4, yl(v) + 4, v, L, yl(v), W - R, yl(v));
  }
  std::string last_phase;
  for (auto& p : pts) {
    if (p.phase != last_phase) {
      s += fmt::format(
          R"~(<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#bbb" stroke-dasharray="4"/><text x="{3}" y="{4}" transform="rotate(90 {3} {4})" fill="#666">{5}</text>)~"
          "\n",
          x(p.t), T, H - B, x(p.t) + 3, T + 4, p.phase);
      last_phase = p.phase;
    }
  }
  auto poly = [&](auto get, auto ymap, const char* color, const char* dash) {
    std::string d;
    for (auto& p : pts)
      d += fmt::format("{:.1f},{:.1f} ", x(p.t + 0.5), ymap(get(p)));
    return fmt::format(
        R"~(<polyline fill="none" stroke="{}" stroke-width="2" stroke-dasharray="{}" points="{}"/>)~"
        "\n",
        color, dash, d);
  };
  s += poly([](const Pt& p) { return p.rate; }, yr, "#1f77b4", "");
  s += poly([](const Pt& p) { return p.p50; }, yl, "#2ca02c", "");
  s += poly([](const Pt& p) { return p.p99; }, yl, "#ff7f0e", "");
  s += poly([](const Pt& p) { return p.p999; }, yl, "#d62728", "3");
  const char* names[] = {"ops/s", "p50", "p99", "p99.9"};
  const char* colors[] = {"#1f77b4", "#2ca02c", "#ff7f0e", "#d62728"};
  for (int k = 0; k < 4; ++k) {
    s += fmt::format(
        R"~(<rect x="{}" y="{}" width="14" height="4" fill="{}"/><text x="{}" y="{}">{}</text>)~"
        "\n",
        L + 10 + k * 110, H - 20, colors[k], L + 28 + k * 110, H - 15, names[k]);
  }
  s += fmt::format(R"~(<text x="{}" y="{}" text-anchor="middle">seconds</text>)~"
                   "\n",
                   (L + W - R) / 2, H - 35);
  s += "</svg>\n";
  return s;
}

// ---- main -----------------------------------------------------------------------

std::vector<uint32_t> parse_list(const std::string& s) {
  std::vector<uint32_t> v;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t c = s.find(',', pos);
    if (c == std::string::npos) c = s.size();
    v.push_back(static_cast<uint32_t>(std::stoul(s.substr(pos, c - pos))));
    pos = c + 1;
  }
  return v;
}

uint16_t free_port_base(unsigned span) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    const uint16_t p = ntohs(a.sin_port);
    if (p > 1024 && p + span < 60000) return p;
  }
  return 20000;
}

std::string machine_line() {
  std::ifstream cpu("/proc/cpuinfo");
  std::string line, model;
  while (std::getline(cpu, line)) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return fmt::format("{} x {}", std::thread::hardware_concurrency(), model);
}

int bench_main(int argc, char** argv) {
  CLI::App app{"nori-bench: a real nori-raft cluster on loopback, measured against its floor"};
  unsigned nodes = 3, cores = 1, groups = 1;
  uint32_t payload = 16;
  std::string inflight = "1,32,256,1024";
  double rate = 0;
  double duration = 6, warmup = 2, read_duration = 4;
  std::string reads = "lease,read_index,stale";
  uint32_t read_inflight = 16, read_write_inflight = 16;
  std::string data_dir;
  bool keep = false, failover = true;
  std::string json_path = "nori-bench-result.json", svg_path = "nori-bench-result.svg";
  uint32_t heartbeat_ms = 150, lease_ms = 2000;
  uint32_t inflight_msgs_max = raft::RaftConfig{}.inflight_msgs_max;
  uint32_t append_hold_us = raft::RaftConfig{}.append_hold_us;
  uint32_t wal_write_hold_bytes = raft::RaftConfig{}.wal_write_hold_bytes;
  bool wal_dsync = false;
  std::string pin = "none";
  // The runtime's default, or NORI_SCHED_SLICE_US as the node processes see it.
  uint32_t sched_slice_us = runtime::RuntimeConfig{}.sched_slice_us;
  if (const char* e = std::getenv("NORI_SCHED_SLICE_US"); e != nullptr && *e != '\0') {
    sched_slice_us = static_cast<uint32_t>(std::strtoul(e, nullptr, 10));
  }
  app.add_option("--nodes", nodes, "node processes")->check(CLI::Range(1, 7));
  app.add_option("--cores", cores, "cores (reactors) per node")->check(CLI::Range(1, 64));
  app.add_option("--groups", groups, "Raft groups (spread over the cores)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--payload", payload, "bytes per proposal");
  app.add_option("--inflight", inflight,
                 "closed-loop sweep: proposals in flight per group, e.g. 1,32,256");
  app.add_option("--rate", rate, "open loop: target proposals/s in total (0: no open-loop phase)");
  app.add_option("--duration", duration, "seconds per write phase");
  app.add_option("--warmup", warmup, "seconds of warm-up (not reported)");
  app.add_option("--reads", reads, "read phases: lease,read_index,stale or none");
  app.add_option("--read-duration", read_duration, "seconds per read phase");
  app.add_option("--read-inflight", read_inflight, "reads in flight per group");
  app.add_option("--read-write-inflight", read_write_inflight,
                 "writes in flight during read phases");
  app.add_option("--data-dir", data_dir,
                 "existing directory on the device under test (default: ./nori-bench-data-<pid>)");
  app.add_flag("--keep-data", keep, "keep the data directories");
  app.add_option("--failover", failover, "measure planned transfer and leader kill at the end")
      ->default_val(true);
  app.add_option("--json", json_path, "result file");
  app.add_option("--svg", svg_path, "chart file");
  app.add_option("--heartbeat-ms", heartbeat_ms);
  app.add_option("--lease-ms", lease_ms);
  app.add_option("--inflight-msgs-max", inflight_msgs_max,
                 "Append messages in flight per follower (RaftConfig::inflight_msgs_max)")
      ->capture_default_str();
  app.add_option("--append-hold-us", append_hold_us,
                 "append coalescing: entries wait this long at most for an unacknowledged "
                 "append (RaftConfig::append_hold_us; 0: off)")
      ->capture_default_str();
  app.add_option("--wal-write-hold-bytes", wal_write_hold_bytes,
                 "WAL write coalescing (RaftConfig::wal_write_hold_bytes; 0: off)")
      ->capture_default_str();
  app.add_option("--pin", pin,
                 "node reactors' pinning: none (default: the nodes share the machine) | auto | "
                 "wrap")
      ->check(CLI::IsMember({"none", "auto", "wrap"}));
  app.add_option("--wal-dsync", wal_dsync,
                 "WAL writes with RWF_DSYNC instead of write + fdatasync");
  app.add_option("--sched-slice-us", sched_slice_us,
                 "EEVDF slice for the node reactors and the floor's threads, us (0: kernel "
                 "default; RuntimeConfig::sched_slice_us)");
  CLI11_PARSE(app, argc, argv);
  // The node processes read it at Runtime start (they inherit the environment).
  ::setenv("NORI_SCHED_SLICE_US", std::to_string(sched_slice_us).c_str(), 1);

  const std::string root =
      (data_dir.empty() ? std::filesystem::current_path().string() : data_dir) +
      "/nori-bench-data-" + std::to_string(::getpid());
  std::filesystem::create_directories(root);
  std::cout << fmt::format(
      "nori-bench: {} nodes x {} cores, {} groups, {} B payloads, data in {}, sched slice {}\n",
      nodes, cores, groups, payload, root,
      sched_slice_us ? fmt::format("{} us", sched_slice_us) : std::string("kernel default"));

  // 1. The floor, before the cluster runs (nothing else of ours on the CPU).
  auto floor = measure_floor(root, 2000, 400, nodes, sched_slice_us);
  if (!floor.ok()) {
    std::cerr << "floor: " << floor.error().to_string() << "\n";
    return 1;
  }
  std::cout << fmt::format(
      "floor: loopback RTT p50 {:.3f} ms; 4 KiB O_DSYNC p50 {:.3f} ms, write+fdatasync p50 {:.3f} "
      "ms ({} writers at once; one alone: {:.3f} / {:.3f} ms) -> commit floor {:.3f} ms\n",
      ms(floor->rtt.percentile(0.5)), ms(floor->dsync.percentile(0.5)),
      ms(floor->fdatasync.percentile(0.5)), nodes, ms(floor->dsync_alone.percentile(0.5)),
      ms(floor->fdatasync_alone.percentile(0.5)), ms(floor->floor_ns()));

  // 2. The cluster.
  const uint16_t base = free_port_base(nodes * cores * 100);
  std::string peers;
  for (unsigned i = 1; i <= nodes; ++i) {
    if (!peers.empty()) peers += ",";
    peers += fmt::format("{}@127.0.0.1:{}", i, base + (i - 1) * std::max(cores, 8u));
  }
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
  Cluster cl;
  for (unsigned i = 1; i <= nodes; ++i) {
    const std::string dir = fmt::format("{}/node{}", root, i);
    std::filesystem::create_directories(dir);
    cl.spawn(exe,
             {"node",
              "--id",
              std::to_string(i),
              "--peers",
              peers,
              "--data",
              dir,
              "--cores",
              std::to_string(cores),
              "--groups",
              fmt::format("1-{}", groups),
              "--heartbeat-ms",
              std::to_string(heartbeat_ms),
              "--lease-ms",
              std::to_string(lease_ms),
              "--inflight-msgs-max",
              std::to_string(inflight_msgs_max),
              "--append-hold-us",
              std::to_string(append_hold_us),
              "--wal-write-hold-bytes",
              std::to_string(wal_write_hold_bytes),
              "--wal-dsync",
              wal_dsync ? "true" : "false",
              "--pin",
              pin,
              "--events",
              dir + "/events.jsonl"},
             dir + "/node.log", static_cast<int>(i));
  }
  int status = 0;
  for (auto& c : cl.kids) {
    if (!cl.wait_for(c, "ready", 30s)) {
      std::cerr << "node " << c.id << " did not start (see its node.log)\n";
      status = 1;
    }
  }
  // Wait until every group has a leader.
  const auto t_elect = Clock::now();
  while (status == 0) {
    std::set<uint64_t> led;
    for (auto& c : cl.kids) {
      cl.send(c, {{"cmd", "status"}});
      auto j = cl.wait_for(c, "status", 5s);
      if (!j) continue;
      for (auto& [g, st] : (*j)["groups"].items()) {
        if (st["role"].get<int>() == 2) led.insert(std::stoull(g));
      }
    }
    if (led.size() == groups) break;
    // Many groups elect in waves (a node grants no vote for a lease window
    // after it starts); allow 10 ms per group beyond 30 s.
    const auto elect_max = 30s + std::chrono::milliseconds(10 * groups);
    if (Clock::now() - t_elect > elect_max) {
      std::cerr << fmt::format("no leader for every group within {} s ({} of {} have one)\n",
                               std::chrono::duration_cast<std::chrono::seconds>(elect_max).count(),
                               led.size(), groups);
      status = 1;
      break;
    }
    std::this_thread::sleep_for(50ms);
  }

  std::vector<PhaseResult> results;
  json failover_json;
  if (status == 0) {
    const auto msd = [](double s) { return static_cast<uint32_t>(s * 1000); };
    std::vector<PhaseSpec> phases;
    if (warmup > 0) phases.push_back({"warmup", "closed", 16, 0, msd(warmup), "none", 0, false});
    for (uint32_t n : parse_list(inflight))
      phases.push_back(
          {fmt::format("closed-{}", n), "closed", n, 0, msd(duration), "none", 0, true});
    if (rate > 0) {
      phases.push_back({fmt::format("open-{:.0f}/s", rate), "open", 0, rate / groups, msd(duration),
                        "none", 0, true});
    }
    if (reads != "none") {
      for (const std::string m : {"lease", "read_index", "stale"}) {
        if (reads.find(m) == std::string::npos) continue;
        phases.push_back({"read-" + m, "closed", read_write_inflight, 0, msd(read_duration), m,
                          read_inflight, true});
      }
    }
    for (const PhaseSpec& p : phases) {
      auto r = run_phase(cl, p, payload, groups);
      if (!r) {
        status = 1;
        break;
      }
      if (p.report) results.push_back(std::move(*r));
    }
    // 3. Failover: a planned transfer, then SIGKILL of the leader, with one
    // proposal in flight per group from clients on every node (only the
    // current leader's clients run). Times are CLOCK_BOOTTIME, which every
    // process of this machine shares.
    if (status == 0 && failover && nodes >= 3) {
      std::cout << "failover: planned transfer, then SIGKILL of the leader of group 1\n";
      cl.quiet = true;
      cl.send_all({{"cmd", "load"},
                   {"phase", "failover"},
                   {"mode", "closed"},
                   {"inflight", 1},
                   {"payload", payload},
                   {"duration_ms", 9000}});
      std::this_thread::sleep_for(1000ms);
      auto leader_of_1 = [&]() -> Child* {
        for (auto& c : cl.kids) {
          if (!c.alive) continue;
          cl.send(c, {{"cmd", "status"}});
          auto j = cl.wait_for(c, "status", 5s);
          if (j && (*j)["groups"].contains("1") && (*j)["groups"]["1"]["role"].get<int>() == 2)
            return &c;
        }
        return nullptr;
      };
      auto first_commit_after = [&](int64_t t0) {
        int64_t best = 0;
        for (auto& c : cl.kids) {
          if (!c.alive) continue;
          cl.send(c, {{"cmd", "status"}});
          auto j = cl.wait_for(c, "status", 5s);
          if (!j) continue;
          int64_t f = (*j)["first_commit_after_mark_ns"].get<int64_t>();
          if (f > t0 && (best == 0 || f < best)) best = f;
        }
        return best == 0 ? -1.0 : ms(static_cast<uint64_t>(best - t0));
      };
      Child* l = leader_of_1();
      if (l != nullptr) {
        Child* target = nullptr;
        for (auto& c : cl.kids) {
          if (&c != l && c.alive) target = &c;
        }
        int64_t t0 = base::to_ns(base::BootClock::now());
        cl.send_all({{"cmd", "mark"}, {"boot_ns", t0}});
        cl.send(*l, {{"cmd", "transfer"}, {"group", 1}, {"to", target->id}});
        std::this_thread::sleep_for(1500ms);
        const double transfer_ms = first_commit_after(t0);
        Child* l2 = leader_of_1();
        double kill_leader_ms = -1, kill_write_ms = -1;
        if (l2 != nullptr) {
          const int64_t tk = base::to_ns(base::BootClock::now());
          for (auto& c : cl.kids) {
            if (&c != l2) cl.send(c, {{"cmd", "mark"}, {"boot_ns", tk}});
          }
          cl.kill(*l2);
          std::this_thread::sleep_for(std::chrono::milliseconds(lease_ms + 2000));
          kill_write_ms = first_commit_after(tk);
          for (auto& c : cl.kids) {
            if (!c.alive) continue;
            cl.send(c, {{"cmd", "status"}});
            auto j = cl.wait_for(c, "status", 5s);
            if (j && (*j)["groups"]["1"]["role"].get<int>() == 2) {
              kill_leader_ms =
                  ms(static_cast<uint64_t>((*j)["leader_elected_ns"].get<int64_t>() - tk));
            }
          }
        }
        for (auto& c : cl.kids) {
          if (c.alive) cl.wait_for(c, "phase_done", 20s);
        }
        failover_json = {{"transfer_to_first_write_ms", transfer_ms},
                         {"kill_to_new_leader_ms", kill_leader_ms},
                         {"kill_to_first_write_ms", kill_write_ms}};
        std::cout << fmt::format(
            "failover: planned transfer -> first committed write {:.1f} ms; leader SIGKILL -> new "
            "leader {:.1f} ms, -> first committed write {:.1f} ms\n",
            transfer_ms, kill_leader_ms, kill_write_ms);
      }
    }
  }
  cl.quit_all();

  // 4. Report.
  const double floor_ms = ms(floor->floor_ns());
  std::cout << "\n"
            << fmt::format("{:<16} {:>10} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7}\n",
                           "phase", "ops/s", "MB/s", "p50 ms", "p90 ms", "p99 ms", "p99.9",
                           "max ms", "syncs/s", "ent/sync", "x floor");
  json jphases = json::array();
  for (const PhaseResult& r : results) {
    const bool is_read = r.spec.reads != "none";
    const HistogramSnapshot& h = is_read ? r.read_lat : r.lat;
    const double ops = (is_read ? r.reads : r.commits) / std::max(1e-9, r.elapsed_s);
    const double mbs = r.commits * payload / std::max(1e-9, r.elapsed_s) / 1e6;
    // Syncs of the busiest node (the leader's log carries every entry).
    uint64_t syncs = 0, ent = 0;
    for (auto& n : r.nodes) {
      if (n.wal_writes > syncs) {
        syncs = n.wal_writes;
        ent = n.wal_entries;
      }
    }
    std::cout << fmt::format(
        "{:<16} {:>10.0f} {:>7.2f} {:>8.3f} {:>8.3f} {:>8.3f} {:>8.3f} {:>8.3f} {:>8.0f} {:>9.1f} "
        "{:>7}\n",
        is_read ? r.spec.name + " (r)" : r.spec.name, ops, mbs, ms(h.percentile(0.5)),
        ms(h.percentile(0.9)), ms(h.percentile(0.99)), ms(h.percentile(0.999)), ms(h.max()),
        syncs / std::max(1e-9, r.elapsed_s), syncs ? double(ent) / syncs : 0.0,
        is_read ? std::string("-") : fmt::format("{:.2f}", ms(h.percentile(0.5)) / floor_ms));
    json jn = json::array();
    for (auto& n : r.nodes) {
      jn.push_back({{"node", n.node},
                    {"cpu_cores", n.cpu_cores},
                    {"peak_rss_mib", n.rss_kb / 1024.0},
                    {"wal_syncs", n.wal_writes},
                    {"wal_entries", n.wal_entries},
                    {"ctx_switches", n.ctx_switches},
                    {"ctx_switches_per_commit",
                     r.commits ? double(n.ctx_switches) / double(r.commits) : 0.0}});
    }
    jphases.push_back({{"name", r.spec.name},
                       {"mode", r.spec.mode},
                       {"inflight_per_group", r.spec.inflight},
                       {"rate_per_group", r.spec.rate},
                       {"reads", r.spec.reads},
                       {"elapsed_s", r.elapsed_s},
                       {"commits", r.commits},
                       {"commits_per_s", r.commits / std::max(1e-9, r.elapsed_s)},
                       {"mb_per_s", mbs},
                       {"reads_done", r.reads},
                       {"reads_per_s", r.reads / std::max(1e-9, r.elapsed_s)},
                       {"errors", r.errors},
                       {"commit_latency", pct_json(r.lat)},
                       {"read_latency", pct_json(r.read_lat)},
                       {"stages",
                        {{"queued", pct_json(r.queued)},
                         {"leader_wal_durable", pct_json(r.leader_wal)},
                         {"quorum_durable", pct_json(r.quorum)},
                         {"applied", pct_json(r.applied)}}},
                       {"leader_syncs_per_s", syncs / std::max(1e-9, r.elapsed_s)},
                       {"entries_per_sync", syncs ? double(ent) / syncs : 0.0},
                       {"elections", r.elections},
                       {"nodes", jn}});
  }
  std::cout << "\nstage breakdown, p50 / p99 ms from the propose call (leader side):\n"
            << fmt::format("{:<16} {:>17} {:>19} {:>17} {:>17}\n", "phase", "queued",
                           "leader WAL durable", "quorum durable", "applied");
  for (const PhaseResult& r : results) {
    if (r.spec.reads != "none") continue;
    auto pp = [](const HistogramSnapshot& h) {
      return fmt::format("{:.3f} / {:.3f}", ms(h.percentile(0.5)), ms(h.percentile(0.99)));
    };
    std::cout << fmt::format("{:<16} {:>17} {:>19} {:>17} {:>17}\n", r.spec.name, pp(r.queued),
                             pp(r.leader_wal), pp(r.quorum), pp(r.applied));
  }
  std::cout << "\nper node (CPU in cores, peak RSS in MiB, context switches of all its threads "
               "per commit):\n";
  for (const PhaseResult& r : results) {
    std::string line = fmt::format("{:<16}", r.spec.name);
    for (auto& n : r.nodes) {
      line += fmt::format("  n{}: {:.2f} cpu {:.0f} MiB {:.2f} cs/c", n.node, n.cpu_cores,
                          n.rss_kb / 1024.0,
                          r.commits ? double(n.ctx_switches) / double(r.commits) : 0.0);
    }
    std::cout << line << "\n";
  }
  json result = {{"schema", "nori-bench/1"},
                 {"command",
                  [&] {
                    std::string c;
                    for (int i = 0; i < argc; ++i)
                      c += (i ? " " : "") + std::string(argv[i]);
                    return c;
                  }()},
                 {"machine", machine_line()},
                 {"config",
                  {{"nodes", nodes},
                   {"cores", cores},
                   {"groups", groups},
                   {"payload_bytes", payload},
                   {"heartbeat_ms", heartbeat_ms},
                   {"lease_ms", lease_ms},
                   {"inflight_msgs_max", inflight_msgs_max},
                   {"append_hold_us", append_hold_us},
                   {"wal_write_hold_bytes", wal_write_hold_bytes},
                   {"sched_slice_us", sched_slice_us},
                   {"data_dir", root}}},
                 {"floor",
                  {{"loopback_rtt", pct_json(floor->rtt)},
                   {"write_4k_odsync", pct_json(floor->dsync)},
                   {"write_4k_fdatasync", pct_json(floor->fdatasync)},
                   {"disk_writers", nodes},
                   {"write_4k_odsync_alone", pct_json(floor->dsync_alone)},
                   {"write_4k_fdatasync_alone", pct_json(floor->fdatasync_alone)},
                   {"commit_floor_ms", floor_ms}}},
                 {"phases", jphases},
                 {"failover", failover_json}};
  std::ofstream(json_path) << result.dump(2) << "\n";
  std::ofstream(svg_path) << svg_chart(cl);
  std::cout << fmt::format(
      "\nfloor {:.3f} ms (RTT {:.3f} + disk {:.3f}); JSON: {}; chart: {}\n", floor_ms,
      ms(floor->rtt.percentile(0.5)),
      ms(std::min(floor->dsync.percentile(0.5), floor->fdatasync.percentile(0.5))), json_path,
      svg_path);
  if (!keep) std::filesystem::remove_all(root);
  return status;
}

}  // namespace
}  // namespace nori::bench

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "node") {
    return nori::raft::tools::node_process_main(argc - 1, argv + 1);
  }
  return nori::bench::bench_main(argc, argv);
}
