"""The web edge: public catalog pages, customer and operator dashboards, and model skills."""

from runapi.web.rendering import format_usd
from runapi.web.routes import skill_routes, web_routes
from runapi.web.skills import (
    Features,
    Skill,
    render_skill,
    skill_name,
    skill_name_from_text,
)

__all__ = [
    "Features",
    "Skill",
    "format_usd",
    "render_skill",
    "skill_name",
    "skill_name_from_text",
    "skill_routes",
    "web_routes",
]
