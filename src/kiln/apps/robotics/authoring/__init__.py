"""Authoring a conversion: inspecting a recording, drafts, previews and saved conversion configs."""
