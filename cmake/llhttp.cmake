# llhttp, the HTTP parser Node.js uses, as an oracle for flipcached's own request-head parser.
# Its C sources come from Debian's node-llhttp (/usr/share/llhttp, headers in
# /usr/share/include/llhttp); they are built here, in strict mode, and never copied into the tree.
#
# flipcached_llhttp_oracle(NAME SOURCES...): a static library NAME of llhttp and SOURCES, with
# llhttp.h on its public include path.
set(LLHTTP_SOURCE_DIR /usr/share/llhttp)
find_path(LLHTTP_INCLUDE_DIR llhttp.h PATHS /usr/share/include/llhttp NO_DEFAULT_PATH)
if(NOT LLHTTP_INCLUDE_DIR OR NOT EXISTS ${LLHTTP_SOURCE_DIR}/llhttp.c)
  message(FATAL_ERROR "llhttp's sources are missing: install node-llhttp (bash .ci/setup does)")
endif()

function(flipcached_llhttp_oracle name)
  add_library(${name}_llhttp STATIC ${LLHTTP_SOURCE_DIR}/llhttp.c ${LLHTTP_SOURCE_DIR}/api.c
    ${LLHTTP_SOURCE_DIR}/http.c)
  target_include_directories(${name}_llhttp PUBLIC ${LLHTTP_INCLUDE_DIR})
  target_compile_definitions(${name}_llhttp PUBLIC LLHTTP_STRICT_MODE=1)
  # Generated code, not ours: none of the project's warnings apply to it.
  target_compile_options(${name}_llhttp PRIVATE -w -Wno-error)
  add_library(${name} STATIC ${ARGN})
  target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/../tests)
  target_link_libraries(${name} PUBLIC ${name}_llhttp)
endfunction()
