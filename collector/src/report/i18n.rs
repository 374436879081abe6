//! The one strings table of rendered reports and inspection records, and the
//! language-dependent formatting of numbers, durations and times.
//!
//! Every label is a field of [`Strings`] keyed by its id (`t.fleet_size_end`
//! in templates), defined once with both languages side by side, so a label
//! cannot exist in one language and be missing in the other, and templates
//! are never duplicated per language. Machine-readable output (CSV, JSON)
//! does not use this table: its keys stay English.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::report::model::Lang;

/// Declares [`Strings`], its English and Chinese instances, and (for tests)
/// the whole table as `(id, en, zh)` rows.
macro_rules! strings_table {
    ($($id:ident => $en:literal, $zh:literal;)*) => {
        /// Every label of the rendered documents, in one language.
        #[derive(Debug)]
        pub struct Strings {
            $(pub $id: &'static str,)*
        }

        pub const EN: Strings = Strings { $($id: $en,)* };
        pub const ZH_CN: Strings = Strings { $($id: $zh,)* };

        /// `(id, English, Chinese)` for every label, so tests can check
        /// translations without listing the ids again.
        #[cfg(test)]
        pub const TABLE: &[(&str, &str, &str)] = &[$((stringify!($id), $en, $zh),)*];
    };
}

strings_table! {
    // Title page and common words.
    report_monthly => "Monthly Operations Report", "运维月报";
    report_quarterly => "Quarterly Operations Report", "运维季报";
    report_annual => "Annual Operations Report", "运维年报";
    period => "Period", "报告周期";
    dates => "Dates", "起止日期";
    time_zone => "Time zone", "时区";
    generated_at => "Generated at", "生成时间";
    contents => "Contents", "目录";
    unknown => "unknown", "未知";
    none => "None", "无";
    no_data => "no data", "无数据";
    host => "Host", "主机";
    agent_id => "Agent ID", "代理 ID";
    all_severities => "All", "全部";
    times_note => "All times are local to the time zone above.", "所有时间均为上述时区的当地时间。";

    // Summary.
    sec_summary => "Summary", "概览";
    fleet_size_end => "Hosts at end of period", "期末主机数";
    fleet_size_start => "Hosts at start of period", "期初主机数";
    availability => "Availability", "可用率";
    incidents_opened => "Incidents opened", "新增事件";
    sla_response => "Response SLA attainment", "响应 SLA 达成率";
    sla_resolution => "Resolution SLA attainment", "解决 SLA 达成率";
    patch_compliance => "Patch compliance", "补丁合规";
    av_compliance => "Antivirus compliance", "防病毒合规";
    baseline_pass => "Baseline pass rate", "基线通过率";
    attention => "Needs attention", "需要关注";
    fleet_change => "Hosts, start → end (added / removed)", "主机数 期初 → 期末（新增 / 移除）";
    open_incidents_end => "Incidents still open at end of period", "期末仍未关闭的事件";
    sla_breach_count => "SLA targets breached", "SLA 超时次数";
    fs_filling => "Filesystems filling within the next period", "下一周期内将写满的文件系统";
    non_compliant_hosts => "Non-compliant hosts (patch / antivirus / baseline)", "不合规主机（补丁 / 防病毒 / 基线）";
    unknown_hosts => "Hosts of unknown compliance (patch / antivirus / baseline)", "合规状态未知的主机（补丁 / 防病毒 / 基线）";
    findings_count => "Abnormal inspection findings", "巡检异常发现";
    not_reached_count => "Hosts not reached by inspections (host × run)", "巡检未应答主机（主机 × 批次）";

    // Fleet.
    sec_fleet => "Fleet", "主机资产";
    hosts_added => "Hosts added", "新增主机";
    hosts_removed => "Hosts removed", "移除主机";
    config_changes => "Configuration changes", "配置变更";
    config_changes_by_host => "Configuration changes by host", "各主机配置变更";
    changes => "Changes", "变更数";

    // Availability.
    fleet_availability => "Fleet availability", "整体可用率";
    daily_fleet_availability => "Daily fleet availability (%)", "每日整体可用率（%）";
    host_availability => "Availability by host, lowest first", "各主机可用率（由低到高）";
    slots_seen => "Slots reported", "已上报时段";
    slots_expected => "Slots expected", "应上报时段";
    slots_note => "A slot is 5 minutes; a host counts as available in a slot when at least one of its reports arrived.", "每个时段为 5 分钟；时段内收到该主机至少一次上报即视为可用。";

    // Incidents.
    sec_incidents => "Incidents", "事件";
    incidents_resolved => "Of those, resolved by end of period", "其中期末已解决";
    by_severity => "Incidents by severity", "按严重级别统计";
    severity => "Severity", "严重级别";
    opened => "Opened", "新增";
    resolved => "Resolved", "已解决";
    open_at_end => "Open at end", "期末未关闭";
    by_rule => "Incidents by rule", "按规则统计";
    rule => "Rule", "规则";
    title => "Title", "名称";
    incident_count => "Incidents", "事件数";
    top_recurring => "Most recurring problems", "高频重复问题";
    reopens => "Reopens", "重开次数";
    occurrences => "Occurrences", "发生次数";
    top_hosts => "Hosts with most incidents", "事件最多的主机";
    sla_title => "SLA attainment", "SLA 达成情况";
    response => "Response", "响应";
    resolution => "Resolution", "解决";
    decided => "Decided", "已判定";
    on_time => "On time", "按时";
    attainment => "Attained", "达成率";
    mtta => "Mean time to acknowledge (MTTA)", "平均响应时间 (MTTA)";
    mttr => "Mean time to resolve (MTTR)", "平均解决时间 (MTTR)";
    breaches => "SLA breaches", "SLA 超时明细";
    incident => "Incident", "事件";
    target => "Target", "目标";
    due_at => "Due", "截止时间";
    met_at => "Met at", "实际达成时间";
    not_met => "not met", "未达成";
    daily_opened => "Incidents opened per day", "每日新增事件";

    // Compliance.
    sec_compliance => "Compliance", "合规";
    patch_max_age => "Longest a security patch may stay pending (days)", "安全补丁允许的最长待装天数";
    compliant => "Compliant", "合规";
    non_compliant => "Non-compliant", "不合规";
    exceptions => "Exceptions", "例外清单";
    status => "Status", "状态";
    reason => "Reason", "原因";
    baseline_items => "Baseline check items", "基线检查项";
    items_passed => "Passed", "通过";
    items_failed => "Failed", "未通过";
    item_pass_rate => "Item pass rate", "检查项通过率";
    unknown_note => "Unknown counts against compliance: a host without data is never taken for compliant.", "“未知”不计为合规：没有数据的主机不会被视为合规。";

    // Capacity.
    sec_capacity => "Capacity forecast", "容量预测";
    next_period_days => "Next period (days)", "下一周期（天）";
    filesystem => "Filesystem", "文件系统";
    filesystems_by_fill => "Filesystems, soonest to fill first", "各文件系统（按预计写满时间排序）";
    used_start => "Used at start", "期初使用率";
    used_end => "Used at end", "期末使用率";
    growth_per_day => "Growth per day", "日增长";
    days_until_full => "Days until full", "预计写满天数";
    fills_next_period => "fills within next period", "下一周期内写满";
    not_growing => "not growing", "未增长";
    unit_pp_per_day => "pp/day", "个百分点/天";
    unit_days => "days", "天";
    top_growth_chart => "Daily usage of the fastest-growing filesystems (%)", "增长最快的文件系统每日使用率（%）";

    // Inspections (in the report and in the record).
    sec_inspections => "Inspections", "巡检";
    runs => "Inspection runs", "巡检执行记录";
    run => "Run", "批次";
    kind => "Kind", "类型";
    kind_inspection => "Inspection", "巡检";
    kind_selfcheck => "Security self-check", "安全自查";
    plan => "Plan", "计划";
    scope => "Scope", "范围";
    full_fleet => "full fleet", "全部主机";
    partial => "partial", "部分主机";
    filed_at => "Filed at", "归档时间";
    hosts_in_scope => "In scope", "范围内主机";
    hosts_inspected => "Inspected", "已巡检";
    hosts_not_reached => "Not reached", "未应答";
    abnormal_findings => "Abnormal findings", "异常发现";
    item => "Check item", "检查项";
    value => "Value", "实测值";
    threshold => "Threshold", "阈值";
    measured_at => "Measured at", "测量时间";
    verdict_normal => "Normal", "正常";
    verdict_abnormal => "Abnormal", "异常";
    verdict_unknown => "Unknown", "未知";
    verdict_not_inspected => "Not inspected", "未巡检";

    // Inspection record.
    record_inspection => "Inspection Record", "巡检记录";
    record_selfcheck => "Security Self-Check Record", "安全自查记录";
    run_id => "Run ID", "批次编号";
    requested_by => "Requested by", "发起人";
    requested_at => "Requested at", "发起时间";
    started_at => "Started at", "开始时间";
    waited => "Waited for answers", "等待应答时长";
    unit_seconds => "s", "秒";
    checks => "Check items in plan", "计划检查项";
    items_total => "Items checked", "检查项总数";
    items_abnormal => "Abnormal items", "异常项";
    items_unknown => "Unknown items", "未知项";
    host_overview => "Hosts in scope", "范围内主机一览";
    not_inspected_hosts => "Hosts not inspected", "未巡检主机";
    last_seen => "Last seen", "最后在线";
    never => "never", "从未上线";
    host_results => "Results by host", "各主机巡检结果";
    cert_sha256 => "Certificate SHA-256", "证书 SHA-256";
    verdict => "Verdict", "结论";
    report_sequence => "Report sequence", "上报序号";
    sign_inspector => "Inspected by", "巡检人";
    sign_reviewer => "Reviewed by", "审核人";
    sign_date => "Date", "日期";
}

/// The strings of `lang`.
pub fn strings(lang: Lang) -> &'static Strings {
    match lang {
        Lang::En => &EN,
        Lang::ZhCn => &ZH_CN,
    }
}

/// A percentage with one decimal ("99.5%"), or "unknown" for `None`.
///
/// A value below 100 never shows as "100.0%": 99.96 % availability is not
/// perfect and the page must not say it is, so it shows as "99.9%".
pub fn fmt_pct(value: Option<f64>, t: &Strings) -> String {
    match value {
        Some(v) if v.is_finite() => {
            let rounded = (v * 10.0).round() / 10.0;
            let shown = if rounded >= 100.0 && v < 100.0 {
                99.9
            } else {
                rounded
            };
            format!("{shown:.1}%")
        }
        _ => t.unknown.to_owned(),
    }
}

/// A duration given in minutes, rounded to the minute, in the largest two
/// units that matter ("42 min", "3 h 05 min", "2 d 03 h"); "unknown" for
/// `None`.
pub fn fmt_minutes(value: Option<f64>, lang: Lang, t: &Strings) -> String {
    let Some(minutes) = value.filter(|m| m.is_finite() && *m >= 0.0) else {
        return t.unknown.to_owned();
    };
    // Rounded and non-negative, so the cast is exact for any realistic MTTR.
    let total = minutes.round() as u64;
    let (days, hours, mins) = (total / 1440, total % 1440 / 60, total % 60);
    let (d, h, m) = match lang {
        Lang::En => (" d", " h", " min"),
        Lang::ZhCn => (" 天", " 小时", " 分钟"),
    };
    if days > 0 {
        format!("{days}{d} {hours:02}{h}")
    } else if hours > 0 {
        format!("{hours}{h} {mins:02}{m}")
    } else {
        format!("{mins}{m}")
    }
}

/// A number with one decimal, or "unknown".
pub fn fmt_decimal(value: Option<f64>, t: &Strings) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.1}"),
        _ => t.unknown.to_owned(),
    }
}

/// A point in time as people read it: "YYYY-MM-DD HH:MM" in `tz`.
pub fn fmt_local(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

/// Like [`fmt_local`], with `if_none` for a missing time.
pub fn fmt_local_opt(at: Option<DateTime<Utc>>, tz: Tz, if_none: &str) -> String {
    at.map_or_else(|| if_none.to_owned(), |at| fmt_local(at, tz))
}

/// Severity as shown in tables: the roman numeral, or "All" for the total
/// row.
pub fn severity_label(severity: &str, t: &Strings) -> String {
    if severity == "all" {
        t.all_severities.to_owned()
    } else {
        severity.to_owned()
    }
}

/// "inspection" / "selfcheck" as a label; anything else as it came.
pub fn run_kind_label(kind: &str, t: &Strings) -> String {
    match kind {
        "inspection" => t.kind_inspection.to_owned(),
        "selfcheck" => t.kind_selfcheck.to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn every_label_is_translated_and_ids_are_unique() {
        let mut ids: Vec<&str> = TABLE.iter().map(|(id, _, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), TABLE.len());
        for (id, en, zh) in TABLE {
            assert!(!en.is_empty() && !zh.is_empty(), "{id} is empty");
            assert!(
                !zh.is_ascii(),
                "{id}: Chinese text {zh:?} looks untranslated"
            );
        }
    }

    #[test]
    fn percentages_have_one_decimal_and_none_is_unknown() {
        assert_eq!(fmt_pct(Some(99.54), &EN), "99.5%");
        assert_eq!(fmt_pct(Some(100.0), &EN), "100.0%");
        assert_eq!(fmt_pct(Some(99.96), &EN), "99.9%");
        assert_eq!(fmt_pct(Some(0.0), &EN), "0.0%");
        assert_eq!(fmt_pct(None, &EN), "unknown");
        assert_eq!(fmt_pct(None, &ZH_CN), "未知");
        assert_eq!(fmt_pct(Some(f64::NAN), &EN), "unknown");
    }

    #[test]
    fn durations_use_the_two_largest_units() {
        assert_eq!(fmt_minutes(Some(42.4), Lang::En, &EN), "42 min");
        assert_eq!(fmt_minutes(Some(185.0), Lang::En, &EN), "3 h 05 min");
        assert_eq!(fmt_minutes(Some(3060.0), Lang::En, &EN), "2 d 03 h");
        assert_eq!(
            fmt_minutes(Some(90.0), Lang::ZhCn, &ZH_CN),
            "1 小时 30 分钟"
        );
        assert_eq!(fmt_minutes(None, Lang::ZhCn, &ZH_CN), "未知");
    }

    #[test]
    fn local_time_is_in_the_given_zone() {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 16, 30, 0).unwrap();
        assert_eq!(fmt_local(at, chrono_tz::Asia::Shanghai), "2026-12-01 00:30");
        assert_eq!(fmt_local(at, chrono_tz::UTC), "2026-11-30 16:30");
    }
}
