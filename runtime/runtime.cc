#include "runtime/runtime.h"

#include <algorithm>
#include <cstdlib>

#include "runtime/metrics.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <string>

namespace nori::runtime {

namespace {

// CPUs this process may run on, in order.
std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
    }
  }
  if (cpus.empty()) cpus.push_back(0);
  return cpus;
}

constexpr unsigned long kSchedSliceUsMax = 100'000;  // the kernel clamps to [100 us, 100 ms]

// struct sched_attr (include/uapi/linux/sched/types.h, SCHED_ATTR_SIZE_VER1):
// glibc has no wrapper and the kernel header clashes with <sched.h>.
struct KernelSchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
  uint32_t sched_util_min;
  uint32_t sched_util_max;
};
static_assert(sizeof(KernelSchedAttr) == 56, "SCHED_ATTR_SIZE_VER1");

}  // namespace

base::Status set_thread_sched_slice(uint32_t slice_us) {
  const pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
  if (::sched_getscheduler(tid) != SCHED_OTHER) return {};
  errno = 0;
  const int nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
  if (nice == -1 && errno != 0)
    return base::err(base::ErrorKind::kIo, "getpriority: {}", std::strerror(errno));
  KernelSchedAttr a{};
  a.size = sizeof a;
  a.sched_policy = SCHED_OTHER;
  a.sched_nice = nice;  // unchanged: setting attributes also sets the nice value
  a.sched_runtime = uint64_t{slice_us} * 1000;
  if (::syscall(SYS_sched_setattr, tid, &a, 0) != 0) {
    return base::err(errno == EINVAL ? base::ErrorKind::kInvalidArgument : base::ErrorKind::kIo,
                     "sched_setattr (slice {} us): {}", slice_us, std::strerror(errno));
  }
  return {};
}

namespace {

RuntimeConfig normalized(RuntimeConfig cfg) {
  // Operator override for measurements (docs/runtime.md, "Idle poll"):
  // NORI_IDLE_POLL_US=20 polls up to 20 us before sleeping; capped at 1 ms so
  // a typo cannot turn every reactor into a busy loop.
  if (const char* p = std::getenv("NORI_IDLE_POLL_US"); p != nullptr && *p != '\0') {
    const unsigned long us = std::min(std::strtoul(p, nullptr, 10), 1000UL);
    cfg.idle_poll = std::chrono::microseconds(us);
  }
  // NORI_SCHED_SLICE_US=100 requests a 100 us EEVDF slice for each reactor
  // thread (0 = the kernel's default); capped at the kernel's 100 ms bound.
  if (const char* p = std::getenv("NORI_SCHED_SLICE_US"); p != nullptr && *p != '\0') {
    cfg.sched_slice_us =
        static_cast<uint32_t>(std::min(std::strtoul(p, nullptr, 10), kSchedSliceUsMax));
  }
  if (cfg.cores == 0) cfg.cores = static_cast<unsigned>(allowed_cpus().size());
  NORI_ASSERT(cfg.cores >= 1 && cfg.cores <= 256, "cores {}", cfg.cores);
  if (cfg.mailbox_slots == 0) cfg.mailbox_slots = cfg.cores <= 8 ? 4096 : 1024;
  NORI_ASSERT(cfg.mailbox_batch_max >= 1 && cfg.mailbox_batch_max <= cfg.mailbox_slots,
              "mailbox_batch_max {} must be in [1, mailbox_slots]", cfg.mailbox_batch_max);
  if (cfg.mailbox_wake_backlog == 0) cfg.mailbox_wake_backlog = cfg.mailbox_slots / 2;
  NORI_ASSERT(cfg.mailbox_wake_backlog <= cfg.mailbox_slots, "mailbox_wake_backlog {} > slots {}",
              cfg.mailbox_wake_backlog, cfg.mailbox_slots);
  NORI_ASSERT(cfg.mailbox_in_flight_max >= 1);
  NORI_ASSERT(cfg.tasks_per_round_max >= 1);
  return cfg;
}

}  // namespace

Runtime::Runtime(RuntimeConfig cfg)
    : cfg_(normalized(cfg)), created_(cfg_.cores), connected_(cfg_.cores + 1), exited_(cfg_.cores) {
  const unsigned n = cfg_.cores;
  rings_.resize(size_t{n} * n);
  for (unsigned from = 0; from < n; ++from) {
    for (unsigned to = 0; to < n; ++to) {
      if (from != to) rings_[from * n + to] = std::make_unique<SpscRing>(cfg_.mailbox_slots);
    }
  }
  reactors_.assign(n, nullptr);
  owned_.resize(n);
  threads_.reserve(n);
  for (unsigned i = 0; i < n; ++i)
    threads_.emplace_back([this, i] { thread_main(i); });
  // Returns once every reactor exists and is wired, so block_on is usable.
  connected_.arrive_and_wait();
}

Runtime::~Runtime() {
  stop();
  owned_.clear();
}

void Runtime::thread_main(unsigned core) {
  const std::vector<int> cpus = allowed_cpus();
  const bool pin =
      cfg_.pin == PinMode::kWrap || (cfg_.pin == PinMode::kAuto && cfg_.cores <= cpus.size());
  if (pin) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpus[core % cpus.size()], &set);
    // Failure (e.g. a cpuset changed under us) leaves the thread unpinned,
    // which is correct, only slower.
    (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  }
  std::string name = "nori-r" + std::to_string(core);
  pthread_setname_np(pthread_self(), name.c_str());
  // Before the ring exists: the io_uring worker threads it creates inherit
  // the slice. Failure leaves the kernel's default, which is correct, only
  // slower to wake up on a busy CPU.
  if (cfg_.sched_slice_us > 0) (void)set_thread_sched_slice(cfg_.sched_slice_us);

  // The ring is created here, on the thread that will be its single issuer.
  owned_[core] = std::make_unique<Reactor>(*this, core, cfg_);
  reactors_[core] = owned_[core].get();
  created_.arrive_and_wait();  // every reactor exists (pointers published by the latch)

  const unsigned n = cfg_.cores;
  std::vector<SpscRing*> in(n, nullptr), out(n, nullptr);
  for (unsigned p = 0; p < n; ++p) {
    if (p == core) continue;
    in[p] = rings_[p * n + core].get();
    out[p] = rings_[core * n + p].get();
  }
  reactors_[core]->connect(reactors_, std::move(in), std::move(out));
  connected_.count_down();

  reactors_[core]->run();
  // Peers may still read our sleeping flag or wake us until all have left run().
  exited_.arrive_and_wait();
}

void Runtime::request_stop() {
  stopping_.store(true, std::memory_order_seq_cst);
  for (Reactor* r : reactors_)
    r->wake_from_any_thread();
}

void Runtime::stop() {
  std::lock_guard lk(stop_mu_);
  if (joined_) return;
  NORI_ASSERT(Reactor::current() == nullptr, "Runtime::stop from a reactor thread");
  request_stop();
  for (auto& t : threads_)
    t.join();
  joined_ = true;
}

std::string Runtime::prometheus_stats() const {
  metrics::Registry reg;
  for (const Reactor* r : reactors_) {
    const ReactorStats& st = r->stats();
    const metrics::Labels core = {{"core", std::to_string(r->core())}};
    auto set = [&](const char* name, const char* help, const std::atomic<uint64_t>& v) {
      reg.counter(name, help, core).inc(v.load(std::memory_order_relaxed));
    };
    set("runtime_loop_rounds_total", "Reactor loop rounds", st.loops);
    set("runtime_sleeps_total", "Times the reactor slept in the kernel", st.sleeps);
    set("runtime_wakeups_sent_total", "Wake-ups sent to sleeping reactors", st.wakeups_sent);
    set("runtime_mailbox_messages_total", "Cross-core messages run", st.messages_in);
    set("runtime_cqes_total", "io_uring completions reaped", st.cqes);
    set("runtime_tasks_resumed_total", "Coroutine resumptions from the ready queue",
        st.tasks_resumed);
  }
  return metrics::render_prometheus({&reg});
}

}  // namespace nori::runtime
