#include "comm/gloo_communicator.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

#include "comm/c10d_communicator.h"

namespace muonrun {
namespace {

bool is_loopback(const sockaddr* address) {
  return address->sa_family == AF_INET &&
         (ntohl(reinterpret_cast<const sockaddr_in*>(address)->sin_addr.s_addr) >> 24) == 127;
}

// The interfaces of this host with an IPv4 address, e.g. "lo (127.0.0.1), eth0 (10.0.0.2)".
std::string interface_list() {
  std::string out;
  ifaddrs* interfaces = nullptr;
  if (getifaddrs(&interfaces) != 0) return "?";
  for (ifaddrs* i = interfaces; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof text);
    out += (out.empty() ? "" : ", ") + std::string(i->ifa_name) + " (" + text + ")";
  }
  freeifaddrs(interfaces);
  return out;
}

// Whether interface `name` exists and has an IPv4 address, and whether that is loopback.
bool interface_address(const std::string& name, bool& loopback) {
  bool found = false;
  ifaddrs* interfaces = nullptr;
  if (getifaddrs(&interfaces) != 0) return false;
  for (ifaddrs* i = interfaces; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || name != i->ifa_name) continue;
    found = true;
    loopback = is_loopback(i->ifa_addr);
  }
  freeifaddrs(interfaces);
  return found;
}

}  // namespace

// Without GLOO_SOCKET_IFNAME, Gloo binds to what the host name resolves to,
// and to 127.0.0.1 when it resolves to nothing usable. On many machines
// (Debian and Ubuntu put "127.0.1.1 <hostname>" in /etc/hosts) that is
// loopback: the other hosts could never connect, and the job would fail
// after minutes with a socket timeout. Refuse at once instead.
void check_gloo_interface(bool spans_hosts) {
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  const std::string hint = "; set GLOO_SOCKET_IFNAME to the interface that reaches the other hosts (this host has " +
                           interface_list() + ")";
  if (ifname && *ifname) {
    bool loopback = false;
    if (!interface_address(ifname, loopback))
      throw std::runtime_error(std::string("GLOO_SOCKET_IFNAME=") + ifname +
                               ": no such network interface with an IPv4 address" + hint);
    if (loopback && spans_hosts)
      throw std::runtime_error(std::string("GLOO_SOCKET_IFNAME=") + ifname +
                               " is a loopback interface, but this job spans several hosts" + hint);
    return;
  }
  if (!spans_hosts) return;
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  addrinfo hints{}, *found = nullptr;
  hints.ai_family = AF_INET;
  bool usable = false;
  if (getaddrinfo(host, nullptr, &hints, &found) == 0) {
    for (addrinfo* a = found; a; a = a->ai_next) usable = usable || !is_loopback(a->ai_addr);
    freeaddrinfo(found);
  }
  if (!usable)
    throw std::runtime_error(std::string("this job spans several hosts, but Gloo would bind to a loopback address: ") +
                             "the host name '" + host + "' resolves to 127.x or to nothing" + hint);
}

std::unique_ptr<Communicator> make_gloo_communicator(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                                                     std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  options->devices.push_back(ifname && *ifname ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                                               : c10d::ProcessGroupGloo::createDefaultDevice());
  try {
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(std::move(store), rank, size, options);
    // Gloo has no ReduceOp::AVG: means are sums divided by the world size.
    return std::make_unique<C10dCommunicator>(group, "gloo", torch::kCPU, /*averages=*/false);
  } catch (const c10::Error& e) {
    throw CommunicationError("rank " + std::to_string(rank) + ": Gloo could not connect to the other ranks within " +
                             std::to_string(timeout.count() / 1000) +
                             " s (comm.timeout_s): " + e.what_without_backtrace());
  }
}

}  // namespace muonrun
