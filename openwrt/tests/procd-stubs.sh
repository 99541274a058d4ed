# shellcheck shell=sh
# Stand-ins for OpenWrt's /lib/functions.sh (UCI) and /lib/functions/procd.sh,
# enough to source /etc/init.d/tinymta in a plain POSIX shell and record what
# it would hand to procd. Used by openwrt/test-ipk:
#
#   sh -c '. procd-stubs.sh; run_init INIT_SCRIPT UCI_FILE OUT_PREFIX'
#
# writes OUT_PREFIX.argv (the instance command, one argument per line) and
# OUT_PREFIX.log (every other procd call and filesystem change, one per line).
#
# UCI files are valid shell (`config TYPE NAME`, `option NAME 'VALUE'`,
# `list NAME 'VALUE'`), which is how OpenWrt's own config_load works too:
# these functions store them in variables UCI_<section>_<option>.

_uci_section=""
config() { _uci_section="$2"; }
option() { eval "UCI_${_uci_section}_$1=\$2"; }
list() {
	eval "_n=\${UCI_${_uci_section}_$1_N:-0}"
	_n=$((_n + 1))
	eval "UCI_${_uci_section}_$1_N=$_n; UCI_${_uci_section}_$1_$_n=\$2"
}
config_load() { . "$STUB_UCI_FILE"; }

# config_get VAR SECTION OPTION [DEFAULT]
config_get() {
	eval "_v=\${UCI_$2_$3-}"
	[ -n "$_v" ] || _v="${4-}"
	eval "$1=\$_v"
}
# config_get_bool VAR SECTION OPTION [DEFAULT]
config_get_bool() {
	config_get _b "$2" "$3" "${4-}"
	case "$_b" in
		1|on|true|yes|enabled) _b=1 ;;
		0|off|false|no|disabled) _b=0 ;;
		*) _b="${4-}" ;;
	esac
	eval "$1=\$_b"
}
# config_list_foreach SECTION OPTION FUNCTION [ARGS...]
config_list_foreach() {
	_s="$1" _o="$2" _f="$3"
	shift 3
	eval "_count=\${UCI_${_s}_${_o}_N:-0}"
	_i=1
	while [ "$_i" -le "$_count" ]; do
		eval "_item=\$UCI_${_s}_${_o}_$_i"
		"$_f" "$_item" "$@"
		_i=$((_i + 1))
	done
}

_log() { printf '%s\n' "$*" >>"$STUB_OUT.log"; }
procd_open_instance() { _log "procd_open_instance $*"; }
procd_close_instance() { _log "procd_close_instance"; }
procd_set_param() {
	_k="$1"; shift
	if [ "$_k" = command ]; then
		: >"$STUB_OUT.argv"
		for _a in "$@"; do printf '%s\n' "$_a" >>"$STUB_OUT.argv"; done
	else
		_log "procd_set_param $_k $*"
	fi
}
procd_append_param() {
	_k="$1"; shift
	if [ "$_k" = command ]; then
		for _a in "$@"; do printf '%s\n' "$_a" >>"$STUB_OUT.argv"; done
	else
		_log "procd_append_param $_k $*"
	fi
}
procd_add_reload_trigger() { _log "procd_add_reload_trigger $*"; }
procd_add_jail() { _log "procd_add_jail $*"; }
procd_add_jail_mount() { _log "procd_add_jail_mount $*"; }
procd_add_jail_mount_rw() { _log "procd_add_jail_mount_rw $*"; }
# The init script must not touch the host: record instead.
mkdir() { _log "mkdir $*"; }
chmod() { _log "chmod $*"; }
ln() { _log "ln $*"; }
logger() { _log "logger $*"; }

# run_init INIT_SCRIPT UCI_FILE OUT_PREFIX
#
# STUB_DEFAULT_ALIASES, when set, replaces the script's DEFAULT_ALIASES
# (/etc/aliases) so that the host's own file does not decide the result.
# The return status of start_service is logged as "start_service N".
run_init() {
	STUB_UCI_FILE="$2" STUB_OUT="$3"
	: >"$STUB_OUT.log"
	rm -f "$STUB_OUT.argv"
	. "$1"
	[ -z "${STUB_DEFAULT_ALIASES+set}" ] || DEFAULT_ALIASES="$STUB_DEFAULT_ALIASES"
	_rc=0
	start_service || _rc=$?
	_log "start_service $_rc"
	service_triggers
	_log "USE_PROCD=${USE_PROCD-} START=${START-} STOP=${STOP-}"
}
