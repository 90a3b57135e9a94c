# Installs the files that do not live under the prefix's usual tree: the configuration, the
# systemd units and the sysusers.d entry. Run by `cmake --install` (install(CODE) in
# CMakeLists.txt sets FLIPCACHED_SOURCE_DIR), so that CMAKE_INSTALL_PREFIX is the one given to
# `cmake --install --prefix`, not the one configured.
#
#   prefix /usr (Debian's)  /etc/flipcached/, /lib/systemd/system/, /usr/lib/sysusers.d/
#   any other prefix P      P/etc/flipcached/, P/lib/systemd/system/, P/lib/sysusers.d/
# and always under $ENV{DESTDIR} (file(INSTALL) adds it). The units run P/sbin/flipcached with P/etc/flipcached's file.
# An existing configuration is never overwritten: the shipped one is put beside it as
# flipcached.conf.new (as dpkg does with a changed conffile), with a message.
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(prefix STREQUAL "/usr")
  set(etc_dir "/etc/flipcached")
  set(unit_dir "/lib/systemd/system")
  set(sysusers_dir "/usr/lib/sysusers.d")
else()
  set(etc_dir "${prefix}/etc/flipcached")
  set(unit_dir "${prefix}/lib/systemd/system")
  set(sysusers_dir "${prefix}/lib/sysusers.d")
endif()
set(destdir "$ENV{DESTDIR}")

set(conf "${destdir}${etc_dir}/flipcached.conf")
if(EXISTS "${conf}")
  message(STATUS "Kept: ${conf} (the shipped one is ${conf}.new)")
  file(INSTALL "${FLIPCACHED_SOURCE_DIR}/conf/flipcached.conf" DESTINATION "${etc_dir}"
       RENAME flipcached.conf.new PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
else()
  file(INSTALL "${FLIPCACHED_SOURCE_DIR}/conf/flipcached.conf" DESTINATION "${etc_dir}"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()

# The units name the binary and the configuration: rewritten for this prefix, in a staging
# directory of this destination's own (two installs to different prefixes at once, as the tests
# run them, must not copy each other's units).
string(MD5 staging "${unit_dir}")
set(staging "${FLIPCACHED_BINARY_DIR}/units-for-install/${staging}")
foreach(unit flipcached.service flipcached.socket)
  file(READ "${FLIPCACHED_SOURCE_DIR}/systemd/${unit}" text)
  string(REPLACE "/usr/sbin/flipcached" "${prefix}/sbin/flipcached" text "${text}")
  string(REPLACE "/etc/flipcached" "${etc_dir}" text "${text}")
  file(MAKE_DIRECTORY "${staging}")
  file(WRITE "${staging}/${unit}" "${text}")
  file(INSTALL "${staging}/${unit}" DESTINATION "${unit_dir}"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endforeach()
file(INSTALL "${FLIPCACHED_SOURCE_DIR}/systemd/flipcached.sysusers" DESTINATION "${sysusers_dir}"
     RENAME flipcached.conf PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
