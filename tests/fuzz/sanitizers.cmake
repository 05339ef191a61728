# SLUICE_FUZZ=ON: every object gets libFuzzer coverage instrumentation plus AddressSanitizer
# and UndefinedBehaviorSanitizer (UB aborts); the fuzz targets link libFuzzer's main
# (tests/fuzz/CMakeLists.txt). Needs clang: CC=clang CXX=clang++ cmake -DSLUICE_FUZZ=ON ...
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "SLUICE_FUZZ=ON needs clang (CXX=clang++), not ${CMAKE_CXX_COMPILER_ID}")
endif()
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
  -fno-omit-frame-pointer)
add_link_options(-fsanitize=address,undefined)
