"""The string catalogue: every user-facing text of the pages, Chinese first.

Pages call :func:`t` with a key; a missing key raises at import time in tests, so no
label is left untranslated. English is there for visitors and for logs read abroad.

The language is a property of the request, not of the process: :func:`t` without an
explicit ``lang`` answers in the language of the Flask request being served (``?lang=``
on the URL, else the ``cityops_lang`` cookie the shell's switch sets, else Chinese).
Layout functions and callbacks both run inside a request, so a page switches language
without passing it around. Never translate at import time (a module constant, a page's
registered name): that text would stay in whichever language the process started with.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

DEFAULT_LANGUAGE = "zh"
#: The languages of the catalogue, default first.
LANGUAGES: tuple[str, ...] = ("zh", "en")
#: Cookie that keeps a browser's choice (set by ``/lang/<code>`` or ``?lang=``).
LANGUAGE_COOKIE = "cityops_lang"
#: Query parameter that picks the language for one URL (kiosks start with it).
LANGUAGE_QUERY = "lang"
#: ``<html lang>`` per language (BCP 47), for screen readers and the browser's fonts.
HTML_LANG = {"zh": "zh-CN", "en": "en"}
#: Locale the browser formats numbers and times with, per language.
BROWSER_LOCALE = {"zh": "zh-CN", "en": "en-GB"}

_forced: ContextVar[str | None] = ContextVar("cityops_language", default=None)

STRINGS: dict[str, dict[str, str]] = {
    "app.title": {"zh": "广安市城市运行管理服务平台", "en": "Guang'an City Operations Centre"},
    "app.short": {"zh": "一网统管", "en": "Unified city management"},
    # ---- the shell: header, navigation, language switch, connection ----------------------------
    "shell.switch_language": {"zh": "English", "en": "中文"},
    "shell.switch_language_title": {"zh": "Switch to English", "en": "切换为中文界面"},
    "shell.disconnected": {
        "zh": "与服务器连接中断，正在自动重连…",
        "en": "Connection to the server lost; reconnecting…",
    },
    "shell.not_found": {"zh": "页面不存在：{path}", "en": "No such page: {path}"},
    "shell.back_home": {"zh": "返回城市运行体征", "en": "Back to the city's vital signs"},
    # ---- end of the shell ----------------------------------------------------------------------
    # ---- vital signs shared by the overview, the district pages and the wall ------------------
    "vital.alerts": {"zh": "未处置告警", "en": "Open alerts"},
    "vital.none": {"zh": "无", "en": "none"},
    "vital.hotline_today": {"zh": "12345 今日受理", "en": "12345 calls today"},
    "vital.hotline_open": {"zh": "在办 {open} · 超期 {overdue}", "en": "{open} open · {overdue} overdue"},
    "vital.satisfaction": {
        "zh": "今日满意率 {rate}（{n} 件已评价）",
        "en": "satisfied today {rate} ({n} rated)",
    },
    "vital.cases_open": {"zh": "城管案件在办", "en": "Urban cases open"},
    "vital.cases_overdue": {"zh": "超期 {n} 件", "en": "{n} overdue"},
    "vital.database_degraded": {
        "zh": "工单与案件数据暂不可用：{reason}",
        "en": "work orders and cases unavailable: {reason}",
    },
    # ---- /districts/<code> ---------------------------------------------------------------------
    "district.title": {"zh": "{name}运行体征", "en": "{name}: vital signs"},
    "district.page_title": {"zh": "区县运行体征", "en": "District vital signs"},
    "district.back": {"zh": "← 全市", "en": "← City"},
    "district.unknown": {
        "zh": "没有代码为 {code} 的区县。广安市的区县：",
        "en": "There is no district with code {code}. Guang'an's districts:",
    },
    "district.aqi": {"zh": "空气质量指数", "en": "AQI"},
    "district.pm25": {"zh": "PM2.5均值", "en": "PM2.5 mean"},
    "district.primary": {"zh": "首要污染物：{p}", "en": "primary pollutant: {p}"},
    "district.map": {"zh": "区县态势（网格）", "en": "District map (grid cells)"},
    "district.spark_aqi": {"zh": "近24小时AQI", "en": "AQI, last 24 h"},
    "district.spark_readings": {"zh": "近24小时数据接入量", "en": "Readings per hour, last 24 h"},
    "district.alert_list": {"zh": "本区县未处置告警", "en": "Open alerts in this district"},
    "district.alert_none": {"zh": "本区县当前没有未处置告警", "en": "No open alerts in this district"},
    "district.hint": {"zh": "点击地图上的区县查看详情", "en": "Click a district on the map for its details"},
    # ---- end of the vital signs and /districts -------------------------------------------------
    # ---- /wall: the command centre's wall ------------------------------------------------------
    "nav.wall": {"zh": "指挥大屏", "en": "Wall"},
    "wall.title": {"zh": "广安市城市运行指挥大屏", "en": "Guang'an city operations wall"},
    "wall.ticker": {"zh": "最新告警", "en": "Latest alerts"},
    "wall.ticker_quiet": {"zh": "当前没有未处置告警", "en": "No open alerts"},
    "wall.no_alerts": {"zh": "无未处置告警", "en": "No open alerts"},
    "wall.alarm": {"zh": "紧急告警 {n} 条待确认：", "en": "{n} urgent alert(s) awaiting acknowledgement: "},
    "wall.panel.emergency": {"zh": "应急", "en": "Emergency"},
    "wall.panel.urban": {"zh": "城市管理与12345", "en": "Urban management and 12345"},
    "wall.panel.ecology": {"zh": "生态环境", "en": "Ecology"},
    "wall.panel_failed": {"zh": "本面板暂不可用：{reason}", "en": "panel unavailable: {reason}"},
    "wall.emergency_list": {"zh": "应急告警", "en": "Emergency alerts"},
    "wall.hotline": {"zh": "12345 热线（今日）", "en": "12345 hotline (today)"},
    "wall.hotline_new": {"zh": "受理", "en": "New"},
    "wall.hotline_open": {"zh": "在办", "en": "Open"},
    "wall.hotline_overdue": {"zh": "超期", "en": "Overdue"},
    "wall.satisfaction": {"zh": "满意率", "en": "Satisfied"},
    "wall.cases": {"zh": "城管案件", "en": "Urban-management cases"},
    "wall.cases_open": {"zh": "在办", "en": "Open"},
    "wall.cases_overdue": {"zh": "超期", "en": "Overdue"},
    "wall.cases_reported": {"zh": "今日上报", "en": "Reported today"},
    "wall.filing_rate": {"zh": "今日立案率", "en": "Filed today"},
    "wall.urban_alerts": {"zh": "城管与热线告警", "en": "Urban and hotline alerts"},
    "wall.water_meeting": {"zh": "断面达标", "en": "Sections on target"},
    "wall.water_worse": {"zh": "{n} 个断面未达目标", "en": "{n} worse than target"},
    # ---- end of /wall --------------------------------------------------------------------------
    "nav.overview": {"zh": "城市运行体征", "en": "City vital signs"},
    "overview.title": {"zh": "城市运行体征", "en": "City vital signs"},
    "kpi.devices_online": {"zh": "在线设备", "en": "Devices online"},
    "kpi.messages_hour": {"zh": "本小时接入数据", "en": "Readings this hour"},
    "kpi.aqi_city": {"zh": "全市空气质量指数", "en": "City AQI"},
    "kpi.pm25_city": {"zh": "全市PM2.5均值", "en": "City PM2.5 mean"},
    "kpi.freshness": {"zh": "数据新鲜度", "en": "Data freshness"},
    "kpi.freshness_none": {"zh": "暂无数据", "en": "no data yet"},
    "unit.seconds_ago": {"zh": "{n} 秒前", "en": "{n} s ago"},
    "unit.minutes_ago": {"zh": "{n} 分钟前", "en": "{n} min ago"},
    "map.title": {"zh": "全市态势", "en": "City map"},
    "map.indicator": {"zh": "区县着色指标", "en": "Colour districts by"},
    "indicator.aqi": {"zh": "空气质量指数 AQI", "en": "AQI"},
    "indicator.devices_online": {"zh": "在线设备数", "en": "devices online"},
    "indicator.pm25": {"zh": "PM2.5 均值 (µg/m³)", "en": "PM2.5 mean (µg/m³)"},
    "chart.readings_24h": {"zh": "近24小时数据接入量", "en": "Readings per hour, last 24 h"},
    "table.districts": {"zh": "区县概况", "en": "Districts"},
    "col.district": {"zh": "区县", "en": "District"},
    "col.aqi": {"zh": "AQI", "en": "AQI"},
    "col.devices": {"zh": "设备", "en": "Devices"},
    "col.online": {"zh": "在线", "en": "Online"},
    "col.pm25": {"zh": "PM2.5", "en": "PM2.5"},
    "status.live": {"zh": "实时", "en": "live"},
    "status.no_data": {"zh": "等待数据接入…", "en": "waiting for data…"},
    "status.degraded": {"zh": "实时数据暂不可用：{reason}", "en": "live data unavailable: {reason}"},
    # ---- /alerts: the duty officers' console ------------------------------------------------
    "nav.alerts": {"zh": "告警处置", "en": "Alerts"},
    "console.title": {"zh": "告警处置台", "en": "Alert console"},
    "console.queue": {"zh": "告警队列", "en": "Alert queue"},
    "console.queue_count": {"zh": "共 {shown} 条（队列 {total} 条）", "en": "{shown} shown ({total} queued)"},
    "console.queue_empty": {"zh": "当前没有待处置告警", "en": "No alerts to handle"},
    "console.filter.domain": {"zh": "领域", "en": "Domain"},
    "console.filter.severity": {"zh": "级别", "en": "Severity"},
    "console.filter.district": {"zh": "区县", "en": "District"},
    "console.filter.state": {"zh": "状态", "en": "State"},
    "console.filter.all": {"zh": "全部", "en": "All"},
    "console.col.severity": {"zh": "级别", "en": "Severity"},
    "console.col.title": {"zh": "告警", "en": "Alert"},
    "console.col.district": {"zh": "区县", "en": "District"},
    "console.col.state": {"zh": "状态", "en": "State"},
    "console.col.age": {"zh": "已持续", "en": "Open for"},
    "console.col.sla": {"zh": "确认时限", "en": "Acknowledge within"},
    "console.col.handler": {"zh": "处置人", "en": "Handler"},
    "console.domain.emergency": {"zh": "应急", "en": "Emergency"},
    "console.domain.urban": {"zh": "城市管理", "en": "Urban"},
    "console.domain.ecology": {"zh": "生态环境", "en": "Ecology"},
    "console.domain.hotline": {"zh": "12345热线", "en": "12345 hotline"},
    "console.domain.system": {"zh": "系统", "en": "System"},
    "console.severity.critical": {"zh": "Ⅰ级 特别严重", "en": "I critical"},
    "console.severity.major": {"zh": "Ⅱ级 严重", "en": "II major"},
    "console.severity.minor": {"zh": "Ⅲ级 较重", "en": "III minor"},
    "console.severity.info": {"zh": "Ⅳ级 一般", "en": "IV info"},
    "console.state.new": {"zh": "待确认", "en": "new"},
    "console.state.acknowledged": {"zh": "已确认", "en": "acknowledged"},
    "console.state.in_progress": {"zh": "处置中", "en": "in progress"},
    "console.state.escalated": {"zh": "已升级", "en": "escalated"},
    "console.state.resolved": {"zh": "已处置", "en": "resolved"},
    "console.state.closed": {"zh": "已关闭", "en": "closed"},
    "console.state.suppressed": {"zh": "已抑制", "en": "suppressed"},
    "console.state.false_alarm": {"zh": "误报", "en": "false alarm"},
    "console.sla.none": {"zh": "—", "en": "—"},
    "console.sla.ok": {"zh": "剩余 {left}", "en": "{left} left"},
    "console.sla.due_soon": {"zh": "即将超时 {left}", "en": "due in {left}"},
    "console.sla.overdue": {"zh": "已超时 {over}", "en": "overdue by {over}"},
    "console.sla.stopped": {"zh": "已确认", "en": "acknowledged"},
    "console.escalation_level": {"zh": "第{n}级升级", "en": "escalation level {n}"},
    "console.action.acknowledge": {"zh": "确认", "en": "Acknowledge"},
    "console.action.start": {"zh": "接手处置", "en": "Start handling"},
    "console.action.assign": {"zh": "指派", "en": "Assign"},
    "console.action.escalate": {"zh": "升级", "en": "Escalate"},
    "console.action.resolve": {"zh": "处置完毕", "en": "Resolve"},
    "console.action.mark_false_alarm": {"zh": "标记误报", "en": "Mark false alarm"},
    "console.action.auto_escalate": {"zh": "超时升级", "en": "Escalated (SLA)"},
    "console.action.close": {"zh": "关闭", "en": "Close"},
    "console.action.suppress": {"zh": "抑制", "en": "Suppress"},
    "console.action.unsuppress": {"zh": "解除抑制", "en": "Unsuppress"},
    "console.action.raise": {"zh": "触发", "en": "Raised"},
    "console.action.repeat": {"zh": "再次触发", "en": "Repeated"},
    "console.action.clear": {"zh": "条件消失", "en": "Condition cleared"},
    "console.action.done": {"zh": "已{action}告警 {id}", "en": "{action}: alert {id}"},
    "console.action.refused": {"zh": "操作未执行：{reason}", "en": "Not done: {reason}"},
    "console.action.no_selection": {
        "zh": "请先在队列中选择一条告警",
        "en": "Select an alert in the queue first",
    },
    "console.action.no_officer": {"zh": "请先填写值班员姓名", "en": "Enter the duty officer's name first"},
    "console.action.failed": {"zh": "操作失败，请重试（{reason}）", "en": "Failed, please retry ({reason})"},
    "console.comment": {"zh": "处置意见", "en": "Comment"},
    "console.comment_placeholder": {
        "zh": "处置意见（可选，随操作记入处置记录）",
        "en": "Comment (optional, kept with the action)",
    },
    "console.assignee_placeholder": {"zh": "指派给（单位或人员）", "en": "Assign to (unit or person)"},
    "console.detail": {"zh": "告警详情", "en": "Alert detail"},
    "console.detail_none": {"zh": "选择左侧队列中的告警查看详情", "en": "Select an alert to see its detail"},
    "console.detail_missing": {"zh": "告警 {id} 不存在", "en": "Alert {id} does not exist"},
    "console.field.id": {"zh": "编号", "en": "ID"},
    "console.field.rule": {"zh": "规则", "en": "Rule"},
    "console.field.source": {"zh": "来源", "en": "Source"},
    "console.field.opened_at": {"zh": "发生时间", "en": "Opened"},
    "console.field.last_seen_at": {"zh": "最近触发", "en": "Last seen"},
    "console.field.occurrences": {"zh": "触发次数", "en": "Occurrences"},
    "console.field.acknowledged": {"zh": "确认", "en": "Acknowledged"},
    "console.field.assigned_to": {"zh": "处置单位/人员", "en": "Assigned to"},
    "console.field.sla_due": {"zh": "确认时限", "en": "SLA due"},
    "console.field.escalation": {"zh": "升级", "en": "Escalation"},
    "console.field.cleared": {"zh": "条件", "en": "Condition"},
    "console.cleared_yes": {"zh": "已消失", "en": "cleared"},
    "console.cleared_no": {"zh": "持续中", "en": "holding"},
    "console.ack_by": {"zh": "{who} 于 {at}", "en": "{who} at {at}"},
    "console.evidence": {"zh": "证据", "en": "Evidence"},
    "console.evidence_first": {"zh": "首次触发", "en": "First"},
    "console.evidence_recent": {"zh": "最近 {n} 条（共 {total} 条）", "en": "Latest {n} (of {total})"},
    "console.evidence_none": {"zh": "暂无证据", "en": "No evidence"},
    "console.history": {"zh": "处置记录", "en": "History"},
    "console.history_none": {"zh": "暂无记录", "en": "No history"},
    "console.col.time": {"zh": "时间", "en": "Time"},
    "console.col.action": {"zh": "操作", "en": "Action"},
    "console.col.transition": {"zh": "状态变化", "en": "State"},
    "console.col.actor": {"zh": "操作人", "en": "By"},
    "console.col.address": {"zh": "地址", "en": "Address"},
    "console.col.comment": {"zh": "意见", "en": "Comment"},
    "console.map": {"zh": "告警位置", "en": "Location"},
    "console.map_none": {"zh": "该告警没有位置", "en": "This alert has no location"},
    "console.officer": {"zh": "值班员：{name}", "en": "Duty officer: {name}"},
    "console.officer_prompt": {
        "zh": "请输入值班员姓名（本窗口有效，处置记录以此署名）",
        "en": "Duty officer's name (kept for this window; actions are signed with it)",
    },
    "console.officer_placeholder": {"zh": "值班员姓名", "en": "Name"},
    "console.officer_submit": {"zh": "开始值班", "en": "Start duty"},
    "console.officer_change": {"zh": "换班", "en": "Hand over"},
    "console.mute": {"zh": "静音", "en": "Mute"},
    "console.unmute": {"zh": "取消静音", "en": "Unmute"},
    "console.muted_note": {"zh": "本屏已静音", "en": "This screen is muted"},
    "console.alarm_banner": {
        "zh": "有 {n} 条紧急告警待确认",
        "en": "{n} urgent alert(s) awaiting acknowledgement",
    },
    "console.live": {"zh": "实时 · 更新于 {at}", "en": "live · updated {at}"},
    "console.degraded": {"zh": "实时队列暂不可用：{reason}", "en": "live queue unavailable: {reason}"},
    "console.disconnected": {
        "zh": "与服务器的连接已中断，正在自动重连…",
        "en": "Connection to the server lost; reconnecting…",
    },
    "console.shortcuts": {
        "zh": "快捷键：J/K 上下移动　A 确认　S 接手处置　E 升级　R 处置完毕　"
        "F 标记误报　C 填写意见　M 静音　Esc 退出输入框",
        "en": "Keys: J/K move, A acknowledge, S start, E escalate, R resolve, F false alarm, "
        "C comment, M mute, Esc leave a field",
    },
    "unit.duration_hms": {"zh": "{h}:{m:02d}:{s:02d}", "en": "{h}:{m:02d}:{s:02d}"},
    "unit.duration_ms": {"zh": "{m}:{s:02d}", "en": "{m}:{s:02d}"},
    "unit.duration_days": {"zh": "{d}天{h}小时", "en": "{d} d {h} h"},
    "console.ev.observed_at": {"zh": "观测时间", "en": "Observed"},
    "console.ev.ts": {"zh": "时间", "en": "Time"},
    "console.ev.value": {"zh": "数值", "en": "Value"},
    "console.ev.threshold": {"zh": "阈值", "en": "Threshold"},
    "console.ev.events": {"zh": "事件", "en": "Events"},
    "console.ev.tickets": {"zh": "工单", "en": "Tickets"},
    "console.ev.readings": {"zh": "读数", "en": "Readings"},
    "console.ev.window_s": {"zh": "统计窗口（秒）", "en": "Window (s)"},
    "console.ev.count": {"zh": "数量", "en": "Count"},
    "console.ev.baseline": {"zh": "基线", "en": "Baseline"},
    "console.ev.since": {"zh": "开始时间", "en": "Since"},
    "console.ev.last_reading": {"zh": "最后读数时间", "en": "Last reading"},
    "console.ev.silent_s": {"zh": "静默时长（秒）", "en": "Silent (s)"},
    "console.ev.period_s": {"zh": "上报周期（秒）", "en": "Period (s)"},
    "console.ev.camera_id": {"zh": "摄像头", "en": "Camera"},
    "console.ev.device_id": {"zh": "设备", "en": "Device"},
    "console.ev.confidence": {"zh": "置信度", "en": "Confidence"},
    "console.ev.event_id": {"zh": "事件编号", "en": "Event"},
    "console.ev.ticket_id": {"zh": "工单编号", "en": "Ticket"},
    "console.ev.type": {"zh": "类型", "en": "Type"},
    "console.ev.district_code": {"zh": "区县代码", "en": "District code"},
    "console.ev.grid_id": {"zh": "网格", "en": "Grid cell"},
    "console.ev.lon": {"zh": "经度", "en": "Longitude"},
    "console.ev.lat": {"zh": "纬度", "en": "Latitude"},
    "console.ev.rate": {"zh": "变化速率", "en": "Rate"},
    # ---- end of /alerts ----------------------------------------------------------------------
    # ---- /ecology: 生态环境 ------------------------------------------------------------------
    "nav.ecology": {"zh": "生态环境", "en": "Ecology"},
    "eco.title": {"zh": "生态环境监测", "en": "Environmental monitoring"},
    "eco.status": {"zh": "实时 · 更新于 {at}", "en": "live · updated {at}"},
    "eco.degraded": {"zh": "数据暂不可用：{reason}", "en": "data unavailable: {reason}"},
    "eco.map": {"zh": "监测点位", "en": "Monitoring sites"},
    "eco.legend_air": {"zh": "空气站（AQI级别色）", "en": "Air stations (AQI level colour)"},
    "eco.legend_water": {"zh": "水质断面（水质类别色）", "en": "Water sections (class colour)"},
    "eco.legend_silent": {"zh": "数据中断", "en": "feed silent"},
    "eco.stations": {"zh": "空气质量监测站", "en": "Air stations"},
    "eco.col.station": {"zh": "站点", "en": "Station"},
    "eco.col.district": {"zh": "区县", "en": "District"},
    "eco.col.aqi": {"zh": "AQI", "en": "AQI"},
    "eco.col.category": {"zh": "类别", "en": "Category"},
    "eco.col.primary": {"zh": "首要污染物", "en": "Primary pollutant"},
    "eco.col.age": {"zh": "数据时间", "en": "Age"},
    "eco.col.section": {"zh": "断面", "en": "Section"},
    "eco.col.grade": {"zh": "水质类别", "en": "Class"},
    "eco.col.target": {"zh": "目标", "en": "Target"},
    "eco.col.zone": {"zh": "声环境功能区", "en": "Zone class"},
    "eco.col.limits": {"zh": "昼/夜限值 dB(A)", "en": "Day/night limit dB(A)"},
    "eco.col.laeq": {"zh": "当前LAeq均值", "en": "LAeq mean now"},
    "eco.col.points": {"zh": "在线/点位", "en": "Live/points"},
    "eco.col.exceeded": {"zh": "当前超标", "en": "Exceeding now"},
    "eco.col.daily": {"zh": "昨日AQI", "en": "Yesterday's AQI"},
    "eco.col.polluted": {"zh": "今日AQI>100小时", "en": "Hours AQI>100 today"},
    "eco.silent": {"zh": "数据中断 {n} 分钟", "en": "feed silent for {n} min"},
    "eco.never": {"zh": "从未上报", "en": "never reported"},
    "eco.age": {"zh": "数据时间：{age}", "en": "data age: {age}"},
    "eco.none": {"zh": "暂无数据", "en": "no data"},
    "eco.none_primary": {"zh": "无（AQI≤50）", "en": "none (AQI ≤ 50)"},
    "eco.river": {"zh": "{river}水质", "en": "{river} water quality"},
    "eco.river_status": {
        "zh": "河流水质：{status}（{n}个断面，Ⅰ～Ⅲ类占 {share}）",
        "en": "River status: {status} ({n} sections, {share} class I–III)",
    },
    "eco.river_few": {
        "zh": "Ⅰ～Ⅲ类断面占 {share}（{n}个有效断面）；不足{min}个断面，按规定不评价河流整体水质",
        "en": "{share} of {n} live sections in class I–III; fewer than {min} sections, "
        "so the method gives no overall river grade",
    },
    "eco.river_none": {"zh": "无有效断面数据，不评价", "en": "no live section, no assessment"},
    "eco.noise": {"zh": "声环境（GB 3096—2008）", "en": "Noise (GB 3096—2008)"},
    "eco.period.day": {"zh": "当前为昼间（06:00–22:00）", "en": "now: day (06:00–22:00)"},
    "eco.period.night": {"zh": "当前为夜间（22:00–06:00）", "en": "now: night (22:00–06:00)"},
    "eco.hourly": {"zh": "近24小时各区县小时AQI", "en": "Hourly AQI per district, last 24 h"},
    "eco.hourly_age": {"zh": "数据至 {hour} 时段", "en": "data up to the {hour} hour"},
    "eco.daily": {"zh": "各区县日AQI（{day}）", "en": "Daily AQI per district ({day})"},
    "eco.insufficient": {"zh": "数据不足", "en": "insufficient data"},
    "eco.exceed": {"zh": "今日超标统计", "en": "Exceedances today"},
    "eco.exceed.aqi": {"zh": "AQI>100（区县·小时）", "en": "AQI > 100 (district-hours)"},
    "eco.exceed.water": {"zh": "水质未达目标断面（当前）", "en": "Sections worse than target (now)"},
    "eco.exceed.noise": {"zh": "噪声超标（点位·小时）", "en": "Noise over limit (point-hours)"},
    "eco.water_palette_note": {
        "zh": "水质类别配色为本平台约定（GB 3838—2002 未规定颜色）",
        "en": "Water class colours are this platform's convention (GB 3838—2002 sets none)",
    },
    "eco.pollutant.pm25": {"zh": "PM2.5", "en": "PM2.5"},
    "eco.pollutant.pm10": {"zh": "PM10", "en": "PM10"},
    "eco.pollutant.so2": {"zh": "SO₂", "en": "SO₂"},
    "eco.pollutant.no2": {"zh": "NO₂", "en": "NO₂"},
    "eco.pollutant.co": {"zh": "CO", "en": "CO"},
    "eco.pollutant.o3": {"zh": "O₃", "en": "O₃"},
    "eco.pollutant.o3_8h": {"zh": "O₃（8小时）", "en": "O₃ (8 h)"},
    # ---- end of /ecology ---------------------------------------------------------------------
    # ---- /urban: 城市管理 --------------------------------------------------------------------
    "nav.urban": {"zh": "城市管理", "en": "Urban management"},
    "urban.title": {"zh": "城市管理", "en": "Urban management"},
    "urban.live": {"zh": "实时 · 更新于 {at}", "en": "live · updated {at}"},
    "urban.degraded": {"zh": "数据暂不可用：{reason}", "en": "data unavailable: {reason}"},
    "urban.kpi.events": {"zh": "近24小时视频事件", "en": "Video events, last 24 h"},
    "urban.kpi.cells": {"zh": "涉及网格", "en": "Grid cells with events"},
    "urban.kpi.open": {"zh": "在办案件", "en": "Open cases"},
    "urban.kpi.overdue": {"zh": "超期案件", "en": "Overdue cases"},
    "urban.kpi.filing": {"zh": "本月立案率", "en": "Filing rate this month"},
    "urban.map": {
        "zh": "视频事件网格分布（近24小时）与在办案件",
        "en": "Video events per grid cell (last 24 h) and open cases",
    },
    "urban.cell": {"zh": "网格", "en": "cell"},
    "urban.count": {"zh": "{n} 起", "en": "{n} events"},
    "urban.legend.heat": {"zh": "网格事件数（少→多）", "en": "Events per cell (few → many)"},
    "urban.legend.cases": {"zh": "案件：", "en": "Cases:"},
    "urban.status.overdue": {"zh": "已超期", "en": "overdue"},
    "urban.status.due_soon": {"zh": "即将超期", "en": "due soon"},
    "urban.status.ok": {"zh": "时限内", "en": "on time"},
    "urban.status.stopped": {"zh": "挂账停计时", "en": "parked, clock stopped"},
    "urban.status.none": {"zh": "待立案", "en": "awaiting filing"},
    "urban.cases": {"zh": "在办案件（按时限排序）", "en": "Open cases (by deadline)"},
    "urban.cases_none": {"zh": "暂无在办案件", "en": "No open cases"},
    "urban.col.case": {"zh": "案卷号", "en": "Case"},
    "urban.col.type": {"zh": "类型", "en": "Type"},
    "urban.col.district": {"zh": "区县", "en": "District"},
    "urban.col.state": {"zh": "环节", "en": "Stage"},
    "urban.col.deadline": {"zh": "时限", "en": "Deadline"},
    "urban.reported_at": {"zh": "上报于 {at}，证据 {n} 条", "en": "reported {at}, {n} pieces of evidence"},
    "urban.deadline.handle": {"zh": "处置", "en": "handling"},
    "urban.deadline.close": {"zh": "结案", "en": "closing"},
    "urban.deadline.left": {"zh": "{kind}剩余 {left}", "en": "{kind}: {left} left"},
    "urban.deadline.overdue": {"zh": "{kind}超期 {over}", "en": "{kind} overdue by {over}"},
    "urban.deadline.at": {"zh": "{kind}时限 {at}", "en": "{kind} due {at}"},
    "urban.deadline.stopped": {"zh": "挂账（停止计时）", "en": "parked (clock stopped)"},
    "urban.deadline.none": {"zh": "待立案（未计时）", "en": "awaiting filing (no clock yet)"},
    "urban.indicators": {"zh": "考核指标（{month} 月）", "en": "Indicators ({month})"},
    "urban.by.district": {"zh": "区县", "en": "District"},
    "urban.by.department": {"zh": "部门", "en": "Department"},
    "urban.col.reported": {"zh": "上报", "en": "Reported"},
    "urban.col.filed": {"zh": "立案", "en": "Filed"},
    "urban.col.filing_rate": {"zh": "立案率", "en": "Filing rate"},
    "urban.col.on_time_handling": {"zh": "按期处置率", "en": "Handled on time"},
    "urban.col.closing_rate": {"zh": "结案率", "en": "Closing rate"},
    "urban.col.on_time_closing": {"zh": "按期结案率", "en": "Closed on time"},
    "urban.col.rework_rate": {"zh": "返工率", "en": "Rework rate"},
    "urban.total": {"zh": "全市", "en": "City"},
    "urban.types": {"zh": "近24小时视频事件类型", "en": "Video event types, last 24 h"},
    # ---- end of /urban -----------------------------------------------------------------------
    # ---- /hotline: 12345 热线 ----------------------------------------------------------------
    "nav.hotline": {"zh": "12345热线", "en": "12345 hotline"},
    "hotline.title": {"zh": "12345政务服务便民热线", "en": "12345 citizen hotline"},
    "hotline.live": {"zh": "实时 · 更新于 {at}", "en": "live · updated {at}"},
    "hotline.degraded": {"zh": "数据暂不可用：{reason}", "en": "data unavailable: {reason}"},
    "hotline.kpi.new": {"zh": "今日受理", "en": "Registered today"},
    "hotline.kpi.open": {"zh": "在办工单", "en": "Open orders"},
    "hotline.kpi.overdue": {"zh": "超期工单", "en": "Overdue orders"},
    "hotline.kpi.satisfaction": {"zh": "满意率（近30日）", "en": "Satisfaction (30 days)"},
    "hotline.stream": {"zh": "最新工单", "en": "Latest orders"},
    "hotline.none": {"zh": "暂无工单", "en": "No orders yet"},
    "hotline.col.time": {"zh": "来电时间", "en": "Called"},
    "hotline.col.category": {"zh": "类别", "en": "Category"},
    "hotline.col.content": {"zh": "诉求内容", "en": "Request"},
    "hotline.col.district": {"zh": "区县", "en": "District"},
    "hotline.col.caller": {"zh": "来电人", "en": "Caller"},
    "hotline.col.state": {"zh": "状态", "en": "State"},
    "hotline.urgent": {"zh": "急", "en": "urgent"},
    "hotline.repeat_of": {"zh": "疑似重复：{id}", "en": "likely repeat of {id}"},
    "hotline.hot_spots": {"zh": "诉求热点网格（近24小时）", "en": "Hot spots by grid cell (last 24 h)"},
    "hotline.hot_spots_note": {
        "zh": "颜色越亮工单越多；悬停查看网格与最多的诉求类别",
        "en": "Brighter cells have more orders; hover for the cell and its top category",
    },
    "hotline.categories": {"zh": "今日诉求类别", "en": "Categories today"},
    "hotline.rates": {"zh": "办理质效（近30日）", "en": "Performance (last 30 days)"},
    "hotline.rate.accept": {"zh": "按时签收率", "en": "Accepted on time"},
    "hotline.rate.close": {"zh": "按时办结率", "en": "Closed on time"},
    "hotline.rate.satisfaction": {"zh": "满意率", "en": "Satisfaction"},
    "hotline.rated": {
        "zh": "满意 {s} · 基本满意 {b} · 不满意 {d}",
        "en": "satisfied {s} · fairly {b} · dissatisfied {d}",
    },
    "hotline.overdue": {"zh": "超期工单", "en": "Overdue orders"},
    "hotline.overdue_none": {"zh": "当前没有超期工单", "en": "No order is overdue"},
    "hotline.col.ticket": {"zh": "工单号", "en": "Order"},
    "hotline.col.kinds": {"zh": "超期环节", "en": "Missed"},
    "hotline.col.over": {"zh": "已超期", "en": "Overdue by"},
    "hotline.col.department": {"zh": "承办单位", "en": "Department"},
    "hotline.kinds_overdue": {"zh": "{kinds}超期", "en": "{kinds} overdue"},
    "hotline.supervised": {"zh": "督办", "en": "supervised"},
    "hotline.repeats": {"zh": "重复诉求（近30日）", "en": "Repeat clusters (last 30 days)"},
    "hotline.repeats_none": {"zh": "近30日没有重复诉求", "en": "No repeats in the last 30 days"},
    "hotline.col.first": {"zh": "首件工单", "en": "First order"},
    "hotline.col.size": {"zh": "件数", "en": "Orders"},
    "hotline.col.last": {"zh": "最近来电", "en": "Latest call"},
    "hotline.cluster_size": {
        "zh": "{n} 件（已合并 {merged}，疑似 {likely}）",
        "en": "{n} ({merged} merged, {likely} likely)",
    },
    # ---- end of /hotline ---------------------------------------------------------------------
}


def t(key: str, lang: str | None = None, **values: object) -> str:
    """The text for ``key`` in ``lang`` (default: the current request's language; Chinese
    when a language lacks the key), with ``{name}`` filled in."""
    entry = STRINGS[key]
    text = entry.get(lang or current_language()) or entry[DEFAULT_LANGUAGE]
    return text.format(**values) if values else text


def normalise_language(value: str | None) -> str | None:
    """``"en"``, ``"EN-us"`` → ``"en"``; ``"zh-CN"`` → ``"zh"``; anything else → None."""
    if not value:
        return None
    code = value.strip().lower().replace("_", "-").split("-", 1)[0]
    return code if code in LANGUAGES else None


def current_language() -> str:
    """The language to answer in: :func:`language` if set, else the request's choice.

    Within a Flask request: ``?lang=`` first (a kiosk URL), then the cookie. Outside a
    request (ingest, tests calling figure builders): Chinese.
    """
    forced = _forced.get()
    if forced is not None:
        return forced
    from flask import has_request_context, request

    if has_request_context():
        for raw in (request.args.get(LANGUAGE_QUERY), request.cookies.get(LANGUAGE_COOKIE)):
            lang = normalise_language(raw)
            if lang is not None:
                return lang
    return DEFAULT_LANGUAGE


@contextmanager
def language(lang: str) -> Iterator[str]:
    """Answer in ``lang`` inside the block, whatever the request says (tests, exports)."""
    code = normalise_language(lang)
    if code is None:
        raise ValueError(f"unknown language {lang!r}; the catalogue has {', '.join(LANGUAGES)}")
    token = _forced.set(code)
    try:
        yield code
    finally:
        _forced.reset(token)


def key_for_text(text: str, prefix: str = "") -> str | None:
    """The catalogue key whose Chinese text is ``text`` (preferring keys starting with
    ``prefix``), so a label registered in Chinese can be shown in the viewer's language."""
    matches = [k for k, entry in STRINGS.items() if entry.get(DEFAULT_LANGUAGE) == text]
    preferred = [k for k in matches if k.startswith(prefix)]
    return (preferred or matches or [None])[0]
