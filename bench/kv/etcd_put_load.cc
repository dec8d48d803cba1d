// etcd_put_load: a closed-loop PUT load generator for etcd 3.4 over its v3
// JSON gateway (POST /v3/kv/put on the client port, HTTP/1.1 keep-alive),
// for the norikv-vs-etcd row of bench/kv/redis_compare.py. Debian ships no
// etcd benchmark tool and etcdctl starts a process per request, so this is
// the "client at hand": one blocking connection per simulated client, each
// sending its next PUT when the previous one is answered (like
// redis-benchmark at pipeline 1).
//
//   etcd_put_load --port 2379 --clients 256 --requests 20000 --value-bytes 16
//
// Prints one CSV line: clients,requests,seconds,req_per_s,p50_ms,p99_ms,errors
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

std::string base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  }
  return out;
}

int connect_to(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Reads one HTTP response (Content-Length bodies only); true on 200.
bool read_response(int fd, std::string& buf) {
  for (;;) {
    size_t hdr_end = buf.find("\r\n\r\n");
    if (hdr_end != std::string::npos) {
      size_t cl = 0;
      size_t p = buf.find("Content-Length:");
      if (p == std::string::npos) p = buf.find("content-length:");
      if (p != std::string::npos && p < hdr_end)
        cl = std::strtoul(buf.c_str() + p + 15, nullptr, 10);
      size_t total = hdr_end + 4 + cl;
      while (buf.size() < total) {
        char tmp[65536];
        ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
        if (n <= 0) return false;
        buf.append(tmp, size_t(n));
      }
      bool ok = buf.compare(0, 12, "HTTP/1.1 200") == 0;
      buf.erase(0, total);
      return ok;
    }
    char tmp[65536];
    ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf.append(tmp, size_t(n));
  }
}

}  // namespace

int main(int argc, char** argv) {
  uint16_t port = 2379;
  int clients = 1;
  long requests = 2000;
  size_t value_bytes = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--port") port = uint16_t(std::atoi(argv[i + 1]));
    if (k == "--clients") clients = std::atoi(argv[i + 1]);
    if (k == "--requests") requests = std::atol(argv[i + 1]);
    if (k == "--value-bytes") value_bytes = size_t(std::atol(argv[i + 1]));
  }
  std::atomic<long> next{0}, errors{0};
  std::vector<std::vector<double>> lat(static_cast<size_t>(clients));
  const std::string value = base64(std::string(value_bytes, 'x'));
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      int fd = connect_to(port);
      if (fd < 0) {
        errors.fetch_add(1);
        return;
      }
      std::string buf;
      for (long i; (i = next.fetch_add(1)) < requests;) {
        std::string body = "{\"key\":\"" + base64("key:" + std::to_string(i % 100000)) +
                           "\",\"value\":\"" + value + "\"}";
        std::string req =
            "POST /v3/kv/put HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            "application/json\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body;
        auto s = std::chrono::steady_clock::now();
        if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != ssize_t(req.size()) ||
            !read_response(fd, buf)) {
          errors.fetch_add(1);
          ::close(fd);
          fd = connect_to(port);
          buf.clear();
          if (fd < 0) return;
          continue;
        }
        lat[size_t(c)].push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s)
                .count());
      }
      ::close(fd);
    });
  }
  for (auto& t : threads)
    t.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<double> all;
  for (auto& v : lat)
    all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) { return all.empty() ? 0.0 : all[size_t(p * double(all.size() - 1))]; };
  std::printf("%d,%zu,%.3f,%.0f,%.3f,%.3f,%ld\n", clients, all.size(), secs,
              double(all.size()) / secs, pct(0.50), pct(0.99), errors.load());
  return all.empty() ? 1 : 0;
}
