// sluicectl: the operator's command line. For now it reads a daemon's stats socket; the
// gRPC control plane adds apply/get/drain later.
//
//   sluicectl stats --socket PATH [-o json|table]
//   sluicectl version
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/stats_server.h"

namespace {

constexpr const char* kVersion = "0.1.0";

int Usage() {
  fprintf(stderr,
          "usage: sluicectl stats --socket PATH [-o json|table]\n"
          "       sluicectl version\n");
  return 2;
}

std::string Scalar(const nlohmann::json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// Scalars as "key  value" lines; objects of scalars flattened as "parent.key"; arrays of
// objects as a table with one row per element.
void PrintTable(const nlohmann::json& doc) {
  std::vector<std::pair<std::string, std::string>> lines;
  for (auto& [key, value] : doc.items()) {
    if (value.is_object()) {
      for (auto& [sub, v] : value.items()) {
        if (!v.is_number() || v.get<uint64_t>() != 0 || key != "drops") {
          lines.emplace_back(key + "." + sub, Scalar(v));
        }
      }
    } else if (!value.is_array()) {
      lines.emplace_back(key, Scalar(value));
    }
  }
  size_t width = 0;
  for (auto& [k, v] : lines) width = std::max(width, k.size());
  for (auto& [k, v] : lines) printf("%-*s  %s\n", static_cast<int>(width), k.c_str(), v.c_str());
  for (auto& [key, value] : doc.items()) {
    if (!value.is_array() || value.empty() || !value[0].is_object()) continue;
    std::vector<std::string> columns;
    for (auto& [col, v] : value[0].items()) columns.push_back(col);
    std::vector<size_t> widths;
    for (const std::string& c : columns) widths.push_back(c.size());
    for (const auto& row : value) {
      for (size_t c = 0; c < columns.size(); ++c) {
        widths[c] = std::max(widths[c], Scalar(row.value(columns[c], nlohmann::json())).size());
      }
    }
    printf("\n%s:\n", key.c_str());
    for (size_t c = 0; c < columns.size(); ++c) {
      printf("  %-*s", static_cast<int>(widths[c]), columns[c].c_str());
    }
    printf("\n");
    for (const auto& row : value) {
      for (size_t c = 0; c < columns.size(); ++c) {
        printf("  %-*s", static_cast<int>(widths[c]),
               Scalar(row.value(columns[c], nlohmann::json())).c_str());
      }
      printf("\n");
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  std::string command = argv[1];
  if (command == "version") {
    printf("sluicectl %s\n", kVersion);
    return 0;
  }
  if (command != "stats") return Usage();
  std::string socket, output = "table";
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--socket" && i + 1 < argc) {
      socket = argv[++i];
    } else if (arg == "-o" && i + 1 < argc) {
      output = argv[++i];
    } else {
      fprintf(stderr, "sluicectl: unknown option '%s'\n", arg.c_str());
      return Usage();
    }
  }
  if (socket.empty() || (output != "json" && output != "table")) return Usage();
  absl::StatusOr<std::string> reply = sluice::QueryStatsSocket(socket, "stats");
  if (!reply.ok()) {
    fprintf(stderr, "sluicectl: %s\n", std::string(reply.status().message()).c_str());
    return 1;
  }
  if (output == "json") {
    fputs(reply->c_str(), stdout);
    return 0;
  }
  nlohmann::json doc = nlohmann::json::parse(*reply, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    fprintf(stderr, "sluicectl: daemon sent something that is not JSON\n");
    return 1;
  }
  PrintTable(doc);
  return 0;
}
