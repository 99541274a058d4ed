# shellcheck shell=sh
# Package version checks shared by openwrt/build-ipk and openwrt/test-ipk.
# POSIX sh: source it, then call the functions.
#
# apk_version_valid VERSION
#   Exit status 0 when apk (apk-tools 3, OpenWrt 25.12 and later) accepts
#   VERSION, following the tokenizer of apk-tools' src/version.c
#   (apk_version_validate):
#
#     digit{.digit}...{letter}{_suffix{digits}}...{~hash}{-rdigits}
#
#   - it starts with digits; "." and more digits may follow, then at most one
#     lowercase letter, directly after a digit ("1.2a");
#   - "_suffix", suffix one of alpha beta pre rc cvs svn git hg p, each
#     optionally followed by digits, may repeat ("1.0_rc1", "6.5_p20250503");
#   - "~" and at least one lowercase hex digit, once ("2023.09.21~1b6ca032");
#   - "-r" and at least one digit, once and last ("0.1.0-r1");
#   - nothing else: no "-" other than "-rN", no uppercase, no "+", no "v".
apk_version_valid() {
	_av_rest="$1"
	_av_digits="${_av_rest%%[!0-9]*}"
	[ -n "$_av_digits" ] || return 1
	_av_rest="${_av_rest#"$_av_digits"}"
	_av_last=digit
	while [ -n "$_av_rest" ]; do
		case "$_av_rest" in
		[a-z]*)
			[ "$_av_last" = digit ] || return 1
			_av_rest="${_av_rest#?}"
			_av_last=letter
			;;
		.*)
			[ "$_av_last" = digit ] || return 1
			_av_rest="${_av_rest#.}"
			_av_digits="${_av_rest%%[!0-9]*}"
			[ -n "$_av_digits" ] || return 1
			_av_rest="${_av_rest#"$_av_digits"}"
			;;
		[0-9]*)
			# digits right after a suffix are its number ("_rc1")
			[ "$_av_last" = suffix ] || return 1
			_av_digits="${_av_rest%%[!0-9]*}"
			_av_rest="${_av_rest#"$_av_digits"}"
			_av_last=suffix_number
			;;
		_*)
			case "$_av_last" in digit|letter|suffix|suffix_number) ;; *) return 1 ;; esac
			_av_rest="${_av_rest#_}"
			_av_word="${_av_rest%%[!a-z]*}"
			case "$_av_word" in
			alpha|beta|pre|rc|cvs|svn|git|hg|p) ;;
			*) return 1 ;;
			esac
			_av_rest="${_av_rest#"$_av_word"}"
			_av_last=suffix
			;;
		'~'*)
			case "$_av_last" in hash|release) return 1 ;; esac
			_av_rest="${_av_rest#?}"
			_av_hex="${_av_rest%%[!0-9a-f]*}"
			[ -n "$_av_hex" ] || return 1
			_av_rest="${_av_rest#"$_av_hex"}"
			_av_last=hash
			;;
		-r*)
			[ "$_av_last" != release ] || return 1
			_av_rest="${_av_rest#-r}"
			_av_digits="${_av_rest%%[!0-9]*}"
			[ -n "$_av_digits" ] || return 1
			_av_rest="${_av_rest#"$_av_digits"}"
			_av_last=release
			;;
		*)
			return 1
			;;
		esac
	done
	return 0
}

# makefile_var NAME MAKEFILE: the value of the first "NAME:=value" at the
# start of a line (PKG_VERSION, PKG_RELEASE of openwrt/Makefile).
makefile_var() {
	sed -n "s/^$1:=//p" "$2" | head -n1
}

# cargo_version CARGO_TOML: the crate version ([package] version = "...").
cargo_version() {
	sed -n 's/^version *= *"\(.*\)"/\1/p' "$1" | head -n1
}
