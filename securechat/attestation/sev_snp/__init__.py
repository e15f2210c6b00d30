"""AMD SEV-SNP attestation: parse reports (abi), read VCEK certificates (kds), check signatures and the chain to
AMD's pinned roots (verify), check the verified claims against a release's policy (validate), and an emulated
platform that signs byte-exact reports with a chain of its own (emulator)."""
