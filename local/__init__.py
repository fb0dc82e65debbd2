"""Development-only tools (never packaged): FM emulator, local gateway, invoke CLI, local stack."""
