# Stand-in for the packages feed's lang/rust/rust-package.mk: the variables
# and the Build/Compile/Cargo call that openwrt/Makefile relies on.
RUST_ARCH_DEPENDS:=@(aarch64||arm||mips||mipsel)
CARGO_PKG_VARS=CARGO_HOME=/staging/host/cargo

define Build/Compile/Cargo
	$(CARGO_PKG_VARS) cargo install --profile release \
		$(if $(strip $(RUST_PKG_FEATURES)),--features "$(strip $(RUST_PKG_FEATURES))") \
		--root $(PKG_INSTALL_DIR) --path "$(PKG_BUILD_DIR)/$(strip $(1))" $(2)
endef

define RustBinPackage
endef
