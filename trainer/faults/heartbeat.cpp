#include "trainer/faults/heartbeat.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <stdexcept>

#include "comm/collective_wait.h"

namespace muonrun {
namespace {

constexpr int kMaxAddresses = 4;
constexpr int kConnectTimeoutMs = 1500, kAnswerTimeoutMs = 2000, kSecondLookMs = 2000;

std::string host_name() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

bool is_loopback(uint32_t address) { return (ntohl(address) >> 24) == 127; }

std::string dotted(uint32_t address) {
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &address, text, sizeof text);
  return text;
}

// The local address the kernel would use to reach `host` (no packet is sent).
uint32_t address_towards(const char* host) {
  addrinfo hints{}, *found = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  if (!host || getaddrinfo(host, "9", &hints, &found) != 0) return 0;
  uint32_t local = 0;
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0) {
    sockaddr_in mine{};
    socklen_t length = sizeof mine;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&mine), &length) == 0) local = mine.sin_addr.s_addr;
  }
  if (fd >= 0) close(fd);
  freeaddrinfo(found);
  return local;
}

// This host's IPv4 addresses, most likely to reach the other ranks first:
// the interface named by GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME, then the
// one that routes to MASTER_ADDR, then the others; loopback last.
std::vector<uint32_t> host_addresses() {
  std::vector<uint32_t> preferred, other;
  std::vector<std::string> named;
  for (const char* variable : {"GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"}) {
    const char* v = std::getenv(variable);
    if (!v || *v == '^' || *v == '=') continue;  // exclusion lists name no interface to use
    std::stringstream list(v);
    for (std::string name; std::getline(list, name, ',');) named.push_back(name);
  }
  if (const uint32_t towards = address_towards(std::getenv("MASTER_ADDR"))) preferred.push_back(towards);
  ifaddrs* interfaces = nullptr;
  if (getifaddrs(&interfaces) == 0) {
    for (ifaddrs* i = interfaces; i; i = i->ifa_next) {
      if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP)) continue;
      const uint32_t address = reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr;
      const bool wanted = std::find(named.begin(), named.end(), i->ifa_name) != named.end();
      (wanted ? preferred : other).push_back(address);
    }
    freeifaddrs(interfaces);
  }
  std::stable_partition(other.begin(), other.end(), [](uint32_t a) { return !is_loopback(a); });
  std::vector<uint32_t> out;
  for (const auto& list : {preferred, other})
    for (uint32_t a : list)
      if (out.size() < kMaxAddresses && std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  return out;
}

// What asking a rank's heartbeat port gave.
struct Reply {
  enum Kind { Answered, Refused, Silent, Unreachable } kind = Unreachable;
  uint32_t address = 0;  // the address that answered or refused
  long long step = -1, counter = -1, idle_ms = -1, wait_ms = -1;
};

// Connects with a timeout; 0 = connected, else the errno (ETIMEDOUT on timeout).
int connect_within(int fd, const sockaddr_in& to, int timeout_ms) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0) return 0;
  if (errno != EINPROGRESS) return errno;
  pollfd p{fd, POLLOUT, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return ETIMEDOUT;
  int error = 0;
  socklen_t length = sizeof error;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
  return error;
}

Reply ask_address(uint32_t address, uint16_t port) {
  Reply reply;
  reply.address = address;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return reply;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = address;
  const int error = connect_within(fd, to, kConnectTimeoutMs);
  if (error == ECONNREFUSED) {
    reply.kind = Reply::Refused;
  } else if (error == 0) {
    reply.kind = Reply::Silent;
    std::string line;
    char buffer[256];
    pollfd p{fd, POLLIN, 0};
    const int64_t deadline = steady_now_ms() + kAnswerTimeoutMs;
    while (line.find('\n') == std::string::npos && steady_now_ms() < deadline &&
           poll(&p, 1, static_cast<int>(deadline - steady_now_ms())) > 0) {
      const ssize_t n = read(fd, buffer, sizeof buffer);
      if (n <= 0) break;
      line.append(buffer, static_cast<size_t>(n));
    }
    std::istringstream in(line);
    std::string magic;
    long long rank, pid;
    if (in >> magic >> rank >> pid >> reply.step >> reply.counter >> reply.idle_ms >> reply.wait_ms &&
        magic == "muonrun-heartbeat")
      reply.kind = Reply::Answered;
  }
  close(fd);
  return reply;
}

// Tries the addresses in order until one answers or refuses (its host is there).
Reply ask(const std::vector<uint32_t>& addresses, uint16_t port) {
  Reply last;
  for (uint32_t a : addresses) {
    last = ask_address(a, port);
    if (last.kind != Reply::Unreachable) return last;
  }
  return last;
}

std::string seconds(long long ms) { return std::to_string((ms + 500) / 1000) + " s"; }

}  // namespace

Heartbeat::Heartbeat(const std::string& run_dir, int rank)
    : dir_(run_dir + "/ranks"), host_(host_name()), rank_(rank) {
  moved_ms_ = steady_now_ms();
  std::filesystem::create_directories(dir_);
  listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t length = sizeof any;
  if (listener_ < 0 || bind(listener_, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0 ||
      listen(listener_, 64) != 0 || getsockname(listener_, reinterpret_cast<sockaddr*>(&any), &length) != 0)
    throw std::runtime_error(std::string("heartbeat: cannot open a TCP port: ") + std::strerror(errno));
  port_ = ntohs(any.sin_port);
  write_file();
  server_ = std::thread([this] { serve(); });
}

Heartbeat::~Heartbeat() {
  stopping_ = true;
  server_.join();
  close(listener_);
}

void Heartbeat::beat(int64_t step) {
  step_ = step;
  pulse();
}

void Heartbeat::pulse() {
  ++counter_;
  moved_ms_ = steady_now_ms();
}

void Heartbeat::serve() {
  int64_t written_ms = steady_now_ms();
  while (!stopping_) {
    pollfd p{listener_, POLLIN, 0};
    if (poll(&p, 1, 200) > 0) {
      const int fd = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) {
        char line[160];
        const int n = std::snprintf(line, sizeof line, "muonrun-heartbeat %d %ld %lld %lld %lld %lld\n", rank_,
                                    static_cast<long>(getpid()), static_cast<long long>(step_.load()),
                                    static_cast<long long>(counter_.load()),
                                    static_cast<long long>(steady_now_ms() - moved_ms_.load()),
                                    static_cast<long long>(failing_ ? -2 : collective_wait_ms()));
        if (write(fd, line, static_cast<size_t>(n)) < 0) {
          // The asker went away: nothing to do.
        }
        close(fd);
      }
    }
    if (steady_now_ms() - written_ms >= 1000) {
      write_file();
      written_ms = steady_now_ms();
    }
  }
}

void Heartbeat::write_file() const {
  // Not fsynced: a heartbeat only matters while the job is alive.
  const std::string path = dir_ + "/rank" + std::to_string(rank_);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << host_ << " " << getpid() << " " << step_.load() << " " << counter_.load() << "\n";
  }
  std::rename(tmp.c_str(), path.c_str());
}

std::vector<int64_t> Heartbeat::endpoint() const {
  std::vector<int64_t> words(kEndpointWords, 0);
  words[0] = getpid();
  words[1] = port_;
  const auto addresses = host_addresses();
  words[2] = static_cast<int64_t>(addresses.size());
  for (size_t i = 0; i < addresses.size(); ++i) words[3 + i] = addresses[i];
  constexpr size_t kHostBytes = (kEndpointWords - 3 - kMaxAddresses) * sizeof(int64_t) - 1;
  std::memcpy(&words[3 + kMaxAddresses], host_.data(), std::min(host_.size(), kHostBytes));
  return words;
}

void Heartbeat::set_peers(const std::vector<int64_t>& endpoints) {
  peers_.clear();
  for (size_t r = 0; r + kEndpointWords <= endpoints.size(); r += kEndpointWords) {
    const int64_t* w = &endpoints[r];
    Peer peer;
    peer.pid = static_cast<long>(w[0]);
    peer.port = static_cast<uint16_t>(w[1]);
    const char* host = reinterpret_cast<const char*>(&w[3 + kMaxAddresses]);
    peer.host.assign(host, strnlen(host, (kEndpointWords - 3 - kMaxAddresses) * sizeof(int64_t)));
    // A loopback address reaches a rank only from its own host.
    for (int64_t i = 0; i < std::min<int64_t>(w[2], kMaxAddresses); ++i) {
      const auto address = static_cast<uint32_t>(w[3 + i]);
      if (!is_loopback(address) || peer.host == host_) peer.addresses.push_back(address);
    }
    peers_.push_back(peer);
  }
}

std::string Heartbeat::diagnose() const {
  if (peers_.empty()) return "the other ranks are unknown (the failure came before the heartbeats were exchanged)";
  failing_ = true;
  const int world = static_cast<int>(peers_.size());
  // Ask everyone at once, twice, so that the whole diagnosis takes seconds.
  auto ask_all = [&] {
    std::vector<std::future<Reply>> pending(world);
    for (int r = 0; r < world; ++r)
      if (r != rank_) pending[r] = std::async(std::launch::async, ask, peers_[r].addresses, peers_[r].port);
    std::vector<Reply> replies(world);
    for (int r = 0; r < world; ++r)
      if (r != rank_) replies[r] = pending[r].get();
    return replies;
  };
  const auto first = ask_all();
  // A second look tells a moving counter from a stuck one; with no answer
  // there is nothing to compare, and the job should end sooner.
  const bool answered = std::any_of(first.begin(), first.end(), [](const Reply& r) { return r.kind == Reply::Answered; });
  if (answered) std::this_thread::sleep_for(std::chrono::milliseconds(kSecondLookMs));
  const auto second = answered ? ask_all() : first;

  std::string out;
  int unreachable = 0, troubled = 0;
  for (int r = 0; r < world; ++r) {
    if (r == rank_) continue;
    const Peer& peer = peers_[r];
    const Reply& a = first[r];
    const Reply& b = second[r];
    std::string who = "rank " + std::to_string(r) + " (pid " + std::to_string(peer.pid) + " on " + peer.host;
    const uint32_t where = b.address ? b.address : a.address;
    if (where) who += ", " + dotted(where);
    who += ")";
    std::string what;
    if (b.kind == Reply::Answered && a.kind == Reply::Answered) {
      if (b.counter != a.counter || b.wait_ms == -2) continue;  // training, or handling the failure too
      if (b.wait_ms >= 0)
        what = "is alive and waiting on a collective for " + seconds(b.wait_ms) + ", after step " +
               std::to_string(b.step);
      else
        what = "is hung: it answers, but its training loop has not moved for " + seconds(b.idle_ms) +
               ", after step " + std::to_string(b.step);
    } else if (b.kind == Reply::Refused) {
      what = "has died: its host answers but the process is gone";
      if (a.kind == Reply::Answered) what += ", after step " + std::to_string(a.step);
    } else if (b.kind == Reply::Silent || a.kind == Reply::Silent) {
      what = "stopped responding: its host accepts connections but the process does not answer (stopped, or "
             "swapping)";
    } else {
      ++unreachable;
      std::string tried;
      for (uint32_t address : peer.addresses) tried += (tried.empty() ? "" : ", ") + dotted(address);
      what = "is unreachable: no answer from " + (tried.empty() ? std::string("any address") : tried) +
             " port " + std::to_string(peer.port) + " (the link or its host is down)";
    }
    ++troubled;
    out += (out.empty() ? "" : "; ") + who + " " + what;
  }
  if (troubled == 0) return "every other rank answers and is training (a network problem between the ranks?)";
  if (unreachable == troubled) return "a network problem: " + out;
  return out;
}

}  // namespace muonrun
