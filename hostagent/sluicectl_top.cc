#include "hostagent/sluicectl_top.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <thread>

#include "common/stats_server.h"
#include "common/strings.h"

namespace sluice::ctl {
namespace {

constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 2;

// What names an element of an array of objects, in this order ("vms[vm1]",
// "backends[10.200.0.10:80 10.1.0.1]", "vips[10.200.0.10 80 tcp]").
constexpr const char* kIdentityFields[] = {"name", "vip", "port", "protocol", "dip"};

std::string Text(const nlohmann::json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

void Flatten(const nlohmann::json& v, const std::string& path,
             std::map<std::string, double>* out) {
  if (v.is_number()) {
    (*out)[path] = v.get<double>();
  } else if (v.is_boolean()) {
    (*out)[path] = v.get<bool>() ? 1 : 0;
  } else if (v.is_object()) {
    for (auto& [key, sub] : v.items()) Flatten(sub, path.empty() ? key : path + "." + key, out);
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) {
      std::string id;
      if (v[i].is_object()) {
        for (const char* field : kIdentityFields) {
          auto it = v[i].find(field);
          if (it == v[i].end() || it->is_object() || it->is_array()) continue;
          id += (id.empty() ? "" : " ") + Text(*it);
        }
      }
      if (id.empty()) id = std::to_string(i);
      Flatten(v[i], path + "[" + id + "]", out);
    }
  }
}

std::string LastComponent(const std::string& path) {
  size_t dot = path.rfind('.');
  size_t bracket = path.rfind(']');
  if (dot == std::string::npos || (bracket != std::string::npos && bracket > dot)) {
    return bracket == std::string::npos ? path : path.substr(bracket + 1);
  }
  return path.substr(dot + 1);
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// 12, 950.5, 12.3k, 4.56M.
std::string Human(double v) {
  char buf[32];
  const double a = std::fabs(v);
  if (a >= 1e9) {
    snprintf(buf, sizeof(buf), "%.2fG", v / 1e9);
  } else if (a >= 1e6) {
    snprintf(buf, sizeof(buf), "%.2fM", v / 1e6);
  } else if (a >= 1e4) {
    snprintf(buf, sizeof(buf), "%.1fk", v / 1e3);
  } else if (v == std::floor(v)) {
    snprintf(buf, sizeof(buf), "%.0f", v);
  } else {
    snprintf(buf, sizeof(buf), "%.1f", v);
  }
  return buf;
}

double Value(const std::map<std::string, double>& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

// Per-second increase of `key`; a counter that went down (the daemon restarted) counts from 0.
double Rate(const std::map<std::string, double>& prev, const std::map<std::string, double>& cur,
            const std::string& key, double seconds) {
  auto c = cur.find(key);
  if (c == cur.end() || seconds <= 0) return 0;
  auto p = prev.find(key);
  double delta = p == prev.end() || c->second < p->second ? c->second : c->second - p->second;
  return delta / seconds;
}

std::string State(const nlohmann::json& doc) {
  std::string s;
  auto flag = [&](const char* key, const char* yes, const char* no) {
    auto it = doc.find(key);
    if (it == doc.end() || !it->is_boolean()) return;
    const char* word = it->get<bool>() ? yes : no;
    if (*word) s += std::string(s.empty() ? "" : " ") + word;
  };
  flag("ready", "ready", "NOT-READY");
  flag("draining", "DRAINING", "");
  auto bgp = doc.find("bgp");
  if (bgp != doc.end() && bgp->is_object() && bgp->value("enabled", false)) {
    s += " bgp " + Text(bgp->value("session", nlohmann::json("?")));
  }
  return s;
}

}  // namespace

std::map<std::string, double> FlattenStats(const nlohmann::json& doc) {
  std::map<std::string, double> out;
  Flatten(doc, "", &out);
  return out;
}

bool IsGauge(const std::string& path) {
  static const std::set<std::string> kGauges = {
      "ready",        "draining",          "polling",        "enabled",
      "workers",      "bytes_per_flow",    "config_generation", "weight",
      "port",         "announced_vips",    "active",         "capacity",
      "restored_at_start", "kept_at_start", "rules_installed", "healthy",
      "queue_full_now"};
  const std::string last = LastComponent(path);
  return kGauges.count(last) > 0 || EndsWith(last, "_capacity") || EndsWith(last, "_live") ||
         EndsWith(last, "_in_use") || EndsWith(last, "_free") || EndsWith(last, "_installed");
}

std::string RenderTopFrame(const TopSample& previous, const TopSample& current, double seconds,
                           size_t max_rows) {
  std::string out;
  if (current.doc.is_null()) {
    return StrCat(current.source, ": unreachable: ", current.error, "\n");
  }
  const nlohmann::json& doc = current.doc;
  const std::string role = doc.value("role", std::string("?"));
  out += StrCat(doc.value("name", std::string("?")), " (", role, ")  ", State(doc), "   [",
                current.source, "]\n");
  const auto cur = FlattenStats(doc);
  const auto prev = previous.doc.is_null() ? std::map<std::string, double>() : FlattenStats(previous.doc);
  const bool have_rates = !previous.doc.is_null() && seconds > 0;

  double drops = 0;
  for (const auto& [key, value] : cur) {
    if (key.rfind("drops.", 0) == 0) drops += Rate(prev, cur, key, seconds);
  }
  auto rate = [&](const std::string& key) {
    return have_rates ? Human(Rate(prev, cur, key, seconds)) + "/s" : std::string("-");
  };
  std::string headline = StrCat("  rx ", rate("rx_packets"), "  tx ", rate("tx_packets"));
  if (role == "mux") {
    headline += StrCat("  new flows ", rate("new_flows"), "  flows ",
                       Human(Value(cur, "flow_table_live")), " / ",
                       Human(Value(cur, "flow_table_capacity")));
  } else if (role == "agent") {
    headline += StrCat("  inbound ", rate("inbound_packets"), "  dsr ", rate("dsr_return_packets"),
                       "  snat out ", rate("snat_out_packets"), "  fastpath ",
                       rate("fastpath_packets"), "  flows ", Human(Value(cur, "flows.active")),
                       " / ", Human(Value(cur, "flows.capacity")));
  }
  headline += StrCat("  drops ", have_rates ? Human(drops) + "/s" : std::string("-"));
  out += headline + "\n";
  if (!have_rates) return out;

  // The busiest counters: everything that moved, fastest first; drop reasons always listed.
  struct Row {
    std::string key;
    double total;
    double rate;
  };
  std::vector<Row> rows;
  for (const auto& [key, value] : cur) {
    if (IsGauge(key)) continue;
    const double r = Rate(prev, cur, key, seconds);
    if (r > 0) rows.push_back({key, value, r});
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    const bool a_drop = a.key.rfind("drops.", 0) == 0;
    const bool b_drop = b.key.rfind("drops.", 0) == 0;
    if (a_drop != b_drop) return a_drop;
    return a.rate > b.rate;
  });
  if (rows.empty()) {
    out += "  (idle: no counter moved)\n";
    return out;
  }
  size_t width = 7;
  for (size_t i = 0; i < rows.size() && i < max_rows; ++i) width = std::max(width, rows[i].key.size());
  char line[512];
  snprintf(line, sizeof(line), "  %-*s  %12s  %10s\n", static_cast<int>(width), "COUNTER", "TOTAL",
           "RATE/s");
  out += line;
  for (size_t i = 0; i < rows.size() && i < max_rows; ++i) {
    snprintf(line, sizeof(line), "  %-*s  %12s  %10s\n", static_cast<int>(width),
             rows[i].key.c_str(), Human(rows[i].total).c_str(), Human(rows[i].rate).c_str());
    out += line;
  }
  if (rows.size() > max_rows) out += StrCat("  ... ", rows.size() - max_rows, " more moved\n");
  return out;
}

namespace {

TopSample Sample(const std::string& socket) {
  TopSample s{.source = socket, .doc = nullptr, .error = ""};
  absl::StatusOr<std::string> reply = QueryStatsSocket(socket, "stats");
  if (!reply.ok()) {
    s.error = std::string(reply.status().message());
    return s;
  }
  nlohmann::json doc = nlohmann::json::parse(*reply, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    s.error = "the daemon sent something that is not a JSON object";
    return s;
  }
  s.doc = std::move(doc);
  return s;
}

int TopUsage(const std::string& why) {
  fprintf(stderr,
          "sluicectl top: %s\nusage: sluicectl top --socket STATS_SOCKET [--socket ...] "
          "[--interval SECONDS] [--count N] [--rows N]\n",
          why.c_str());
  return kUsage;
}

}  // namespace

int Top(const std::vector<std::string>& args) {
  std::vector<std::string> sockets;
  double interval = 1.0;
  uint64_t count = 0;  // 0 = until interrupted
  uint64_t rows = 20;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (i + 1 >= args.size()) return TopUsage(StrCat("'", arg, "' needs a value or is unknown"));
    const std::string& value = args[++i];
    if (arg == "--socket") {
      sockets.push_back(value);
    } else if (arg == "--interval") {
      char* end = nullptr;
      interval = strtod(value.c_str(), &end);
      if (end == value.c_str() || *end != '\0' || !(interval >= 0.05 && interval <= 3600)) {
        return TopUsage(StrCat("--interval '", value, "': seconds between 0.05 and 3600"));
      }
    } else if (arg == "--count") {
      if (!ParseUint(value, &count) || count == 0) {
        return TopUsage(StrCat("--count '", value, "': a number of frames, at least 1"));
      }
    } else if (arg == "--rows") {
      if (!ParseUint(value, &rows) || rows == 0 || rows > 1000) {
        return TopUsage(StrCat("--rows '", value, "': 1 to 1000"));
      }
    } else {
      return TopUsage(StrCat("unknown option '", arg, "'"));
    }
  }
  if (sockets.empty()) return TopUsage("at least one --socket is needed");

  const bool terminal = isatty(STDOUT_FILENO) != 0;
  const auto period = std::chrono::duration<double>(interval);
  std::vector<TopSample> previous;
  auto taken = std::chrono::steady_clock::now();
  for (const std::string& s : sockets) previous.push_back(Sample(s));
  int status = kOk;
  for (uint64_t frame = 0; count == 0 || frame < count; ++frame) {
    // The refresh period of the view (rates are per measured second, not per nominal one).
    std::this_thread::sleep_until(taken + period);
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - taken).count();
    taken = now;
    std::string text = terminal ? "\033[H\033[2J" : (frame == 0 ? "" : "\n");
    text += StrCat("sluicectl top: ", sockets.size(), " daemon(s), every ", Human(interval), " s\n\n");
    size_t readable = 0;
    for (size_t d = 0; d < sockets.size(); ++d) {
      TopSample current = Sample(sockets[d]);
      readable += current.doc.is_null() ? 0 : 1;
      text += RenderTopFrame(previous[d], current, seconds, rows) + "\n";
      previous[d] = std::move(current);
    }
    fputs(text.c_str(), stdout);
    fflush(stdout);
    status = readable == 0 ? kFailed : kOk;
  }
  return status;
}

}  // namespace sluice::ctl
